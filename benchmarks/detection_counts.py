"""Count-level streams for the detection benchmark: per-evaluation counts drawn directly.

A stream is a set of *cells* (the finest intersection, e.g. race × sex), each with a share
of the decisions, a favorable rate, and the outcome rates given the decision. Every
evaluation step draws, per cell and seed, ``n ~ Poisson(rate · Δt · share)`` decisions,
``k ~ Binomial(n, p)`` favorable ones, and the labels of the decisions made ``delay`` steps
earlier (``Binomial`` with 5 % never labeled, as the simulator's ``never_share``); the
attribute groups are sums of cells. Scores are calibrated in the mean (the mean score of a
labeled decision with decision ``d`` is ``P(label = 1 | d)``; the calibration-drift scenario
runs at event level instead).

The counts feed the product's own :class:`~fairwatch.alerts.sequential.ModelEvidence`,
with a leading batch axis of seeds, so 20 seeds × 90 days take minutes. :func:`event_check`
runs the event-level path (simulator → engine → snapshot → :class:`AlertLoop`) beside the
same engine's counts fed to this driver, and returns both lists of tier changes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np
from fairwatch.alerts.config import AlertsConfig
from fairwatch.alerts.sequential import ModelEvidence

NEVER = 0.05


@dataclass(frozen=True)
class Cells:
    """Cells of one stream: labels per cell, share, favorable rate, P(label=1 | decision)."""

    attributes: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]  # per cell, one group per attribute
    share: np.ndarray
    p: np.ndarray
    label_rate: np.ndarray  # (cells, 2): P(label = 1 | decision = d)
    intersections: tuple[tuple[str, ...], ...] = ()

    def with_(self, **kw) -> Cells:
        return replace(self, **kw)

    def groups(self) -> tuple[list[tuple[str, str]], np.ndarray]:
        """(attribute, group) names and the membership matrix (groups × cells)."""
        names: list[tuple[str, str]] = []
        rows = []
        cols = [(a,) for a in self.attributes] + list(self.intersections)
        for col in cols:
            idx = [self.attributes.index(a) for a in col]
            vals = sorted({tuple(lab[i] for i in idx) for lab in self.labels})
            for v in vals:
                names.append((",".join(col), ",".join(v)))
                rows.append([tuple(lab[i] for i in idx) == v for lab in self.labels])
        return names, np.array(rows, float)


def truth(cells: Cells) -> dict[str, dict[str, float]]:
    """Population values of the baseline metrics per attribute (the stated-constant baseline)."""
    names, m = cells.groups()
    w = m * cells.share
    n = w.sum(1)
    p = (w * cells.p).sum(1) / n
    # P(label, decision) per group
    p1l = (w * cells.p * cells.label_rate[:, 1]).sum(1) / n
    p0l = (w * (1 - cells.p) * cells.label_rate[:, 0]).sum(1) / n
    p1n = p - p1l
    tpr = p1l / (p1l + p0l)
    fpr = p1n / (p1n + (1 - p) - p0l)
    acc = p1l + (1 - p) - p0l
    out: dict[str, dict[str, float]] = {}
    for attr in dict.fromkeys(a for a, _ in names):
        i = [j for j, (a, _) in enumerate(names) if a == attr]
        out.setdefault("demographic_parity_ratio", {})[attr] = float(p[i].min() / p[i].max())
        out.setdefault("disparate_impact", {})[attr] = float(p[i].min() / p[i].max())
        out.setdefault("equalized_odds_gap", {})[attr] = float(max(np.ptp(tpr[i]), np.ptp(fpr[i])))
        out.setdefault("expected_calibration_error", {})[attr] = 0.0
        out.setdefault("accuracy", {})[attr] = float(acc[i].min())
    return out


@dataclass
class CountStream:
    """Draws the cumulative per-group counts of ``batch`` seeded streams, one evaluation at a time."""

    cells: Cells
    batch: int
    rate: float
    step_s: float
    delay_steps: int
    seed: int
    names: list[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.names, self.member = self.cells.groups()
        self.rng = np.random.default_rng(self.seed)
        c, b = len(self.cells.labels), self.batch
        self.dec = np.zeros((b, c, 2))
        self.lab = np.zeros((b, c, 2, 2))
        self.cal_s = np.zeros((b, c))
        self.cal_l = np.zeros((b, c))
        self.pending = [np.zeros((b, c, 2, 2)) for _ in range(self.delay_steps)]
        self.p = np.tile(self.cells.p, (b, 1))
        self.label_rate = np.tile(self.cells.label_rate, (b, 1, 1))

    def set_rates(self, p: np.ndarray, label_rate: np.ndarray, mask: np.ndarray) -> None:
        """Switch the streams in ``mask`` to other favorable / outcome rates (a drift, a rollback)."""
        self.p[mask] = p
        self.label_rate[mask] = label_rate

    def step(self) -> tuple[np.ndarray, ...]:
        rng = self.rng
        n = rng.poisson(self.rate * self.step_s * self.cells.share, size=self.p.shape)
        k = rng.binomial(n, self.p)
        self.dec[..., 1] += k
        self.dec[..., 0] += n - k
        nd = np.stack([n - k, k], -1)  # (b, c, 2)
        got = rng.binomial(nd, 1 - NEVER)
        ones = rng.binomial(got, self.label_rate)
        new = np.stack([got - ones, ones], -1)  # (b, c, d, l)
        self.pending.append(new)
        arrived = self.pending.pop(0)
        self.lab += arrived
        # calibrated in the mean: score sum = labeled × P(label = 1 | d)
        self.cal_s += (arrived.sum(-1) * self.label_rate).sum(-1)
        self.cal_l += arrived[..., 1].sum(-1)
        m = self.member
        lab = np.einsum("gc,bcdl->bgdl", m, self.lab)
        # one score bin: scores are calibrated in the mean, the bins' spread is not modelled
        return (
            np.einsum("gc,bcd->bgd", m, self.dec),
            lab,
            lab.sum((-1, -2))[..., None],
            (self.cal_s @ m.T)[..., None],
            (self.cal_l @ m.T)[..., None],
        )


def run(
    cells: Cells,
    config: AlertsConfig,
    *,
    seeds: int,
    seconds: float,
    step_s: float,
    rate: float = 10.0,
    seed: int = 0,
    delay_s: float = 600.0,
    baseline: dict | None = None,
    drift: tuple[float, Cells] | None = None,
    rollback: bool = True,
    stop_after_tier3: bool = False,
) -> dict:
    """One scenario over ``seeds`` streams; tier raises per seed and the first tier-3 time.

    ``drift = (t, cells_after)``: from simulated second ``t`` the cells' rates change; a
    tier 3 rolls its stream back to the original rates (``rollback``).
    """
    stream = CountStream(cells, seeds, rate, step_s, max(1, round(delay_s / step_s)), seed)
    ev = ModelEvidence(config, interval=step_s, batch=seeds)
    base = baseline or {}

    def bl(metric: str, attr: str) -> float | None:
        return base.get(metric, {}).get(attr)

    raises = np.zeros((seeds, 4), int)
    first3 = np.full(seeds, np.nan)
    first: dict[int, np.ndarray] = {t: np.full(seeds, np.nan) for t in (1, 2, 3)}
    prev = None
    drifted = False
    steps = int(seconds // step_s)
    keys = None
    for i in range(steps):
        t = (i + 1) * step_s
        if drift is not None and not drifted and t > drift[0]:
            stream.set_rates(drift[1].p, drift[1].label_rate, np.ones(seeds, bool))
            drifted = True
        st = ev.step(stream.names, *stream.step(), bl)
        if st is None:
            continue
        if keys is None or prev is None or prev.shape != st.shape:
            prev = np.full_like(st, -1)
        up = (st > np.maximum(prev, 0)) & (st >= 1)
        for tier in (1, 2, 3):
            hit = up & (st == tier)
            raises[:, tier] += hit.sum(1)
            any_hit = hit.any(1) & np.isnan(first[tier])
            first[tier][any_hit] = t
        new3 = (st >= 3).any(1) & np.isnan(first3)
        first3[new3] = t
        if rollback and drift is not None and new3.any():
            stream.set_rates(cells.p, cells.label_rate, new3)
        prev = st.copy()
        keys = True
        if stop_after_tier3 and not np.isnan(first3).any():
            break
    return {
        "seeds": seeds,
        "simulated_s": steps * step_s,
        "tier_raises_per_seed": {str(t): raises[:, t].tolist() for t in (1, 2, 3)},
        "first_raise_s": {str(t): [None if np.isnan(x) else float(x) for x in first[t]] for t in (1, 2, 3)},
        "first_tier3_s": [None if np.isnan(x) else float(x) for x in first3],
        "machines": ev.layout.machines if ev.layout else [],
        "detectors": len(ev.layout.specs) if ev.layout else 0,
        "thresholds": ev.tier_thresholds(),
    }


# -- scenarios ------------------------------------------------------------------------


def from_engine_totals(st, race_sex: str = "race,sex") -> Cells:
    """Cells (race × sex) estimated from an engine model state's totals (a long simulator run)."""
    names = st.groups.names
    t = st.totals
    rows = [i for i, (a, _) in enumerate(names) if a == race_sex]
    n = t.dec[rows].sum(1).astype(float)
    p = t.dec[rows, 1] / n
    lab = t.lab[rows].astype(float)  # (c, d, l)
    label_rate = lab[:, :, 1] / lab.sum(2)
    labels = tuple(tuple(names[i][1].split(",")) for i in rows)
    return Cells(("race", "sex"), labels, n / n.sum(), p, label_rate, (("race", "sex"),))


def synthetic(
    attributes: dict[str, tuple[tuple[str, float], ...]],
    rate_of: dict[tuple[str, ...], float] | None = None,
    *,
    base_rate: float = 0.7,
    small: tuple[tuple[str, ...], float] | None = None,
    label_rate: tuple[float, float] = (0.45, 0.8),
) -> Cells:
    """Cells of independent attributes (name → ((group, share), …)), all intersected.

    ``rate_of``: favorable rate per cell (default ``base_rate``); ``small``: one cell's share.
    """
    attrs = tuple(attributes)
    combos = list(itertools.product(*(attributes[a] for a in attrs)))
    labels = tuple(tuple(g for g, _ in c) for c in combos)
    share = np.array([np.prod([s for _, s in c]) for c in combos])
    if small is not None:
        j = labels.index(small[0])
        rest = 1 - share[j]
        share = share * (1 - small[1]) / rest
        share[j] = small[1]
    p = np.array([(rate_of or {}).get(lab, base_rate) for lab in labels])
    lr = np.tile(np.array(label_rate), (len(labels), 1))
    return Cells(attrs, labels, share / share.sum(), p, lr, (attrs,))
