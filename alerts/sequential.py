"""The sequential policy: the alert rules as e-detectors (:mod:`fairwatch.alerts.evidence`).

Every guard and degradation threshold of :class:`~fairwatch.alerts.config.PolicyConfig`
becomes a set of one-sided constraints on group rates, one detector per alternative:

==============================  ==========================================================
rule                            constraints (groups ``g``, ``h`` of one attribute)
==============================  ==========================================================
DP ratio ≥ c                    ``p_g ≥ c·p_h`` for every ordered pair
DI ≥ below (≤ above)            with a configured reference ``r``: ``p_g ≥ below·p_r``
                                (``p_r ≥ p_g / above``); else every ordered pair
EO gap ≤ δ                      ``TPR_h − TPR_g ≤ δ`` and ``FPR_h − FPR_g ≤ δ``, every pair
ECE ≤ δ                         ``|mean outcome − mean score| ≤ δ`` in every group
accuracy ≥ a                    ``acc_g ≥ a`` in every group
==============================  ==========================================================

Degradation against the baseline ``b`` is a constraint of the same shape at the
degraded level (relative: ``c = b (1 − d)``; absolute: ``b − d`` for "low" metrics,
``b + d`` for "high" ones). **The baseline is a stated constant**: its own sampling error
is not accounted for (approve baselines from a long period, or from the offline report).

A detector of tier ``t`` alarms at ``S ≥ log(A_t K_t)``: ``A_t`` = the tier's budget in
evaluations (``alerts.budget`` / evaluation interval), ``K_t`` = the model's number of
tier-``t`` detectors. A (metric, attribute) state machine raises to the highest tier
whose detector alarmed; it holds a tier while a detector of that tier is above
``hold_fraction`` of its threshold and clears after ``clear_for`` evaluations below.
The windows, ``for`` and the multi-window confirmation of the fixed-sample policy are not
used: the detectors see the counts that arrived since the last evaluation (late events
counted when they arrive) and their false-alarm rate holds over unlimited looks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from fairwatch.monitor.snapshot import Snapshot

from .config import METRICS, AlertsConfig
from .evidence import DetectorSpec, EvidenceBank, Increment, VectorTiers

__all__ = ["WINDOW", "ModelEvidence", "build_detectors", "counts_from_snapshot", "Layout"]

#: the ``window`` label of the sequential state machines and evidence series
WINDOW = "sequential"

Baseline = Callable[[str, str], float | None]


@dataclass(frozen=True)
class Layout:
    specs: list[DetectorSpec]  # sorted by machine
    machines: list[tuple[str, str]]  # (metric, attribute)
    series: list[tuple[str, str, str, int]]  # (metric, attribute, group, tier)
    names: list[tuple[str, str]]  # (attribute, group) per group index
    starts: np.ndarray  # first detector of each machine (for reduceat)


def _levels(rule, metric: str, base: float | None, thresholds) -> dict[float, int]:
    """Null levels of one metric's constraints → tier (highest tier per level)."""
    direction = METRICS[metric]
    out: dict[float, int] = {}

    def put(level: float, tier: int) -> None:
        level = round(float(level), 9)
        out[level] = max(out.get(level, 0), tier)

    if base is not None and rule.degradation != "none":
        for k, d in enumerate(thresholds):
            if direction == "low":
                put(base * (1 - d) if rule.degradation == "relative" else base - d, k + 1)
            else:
                put(base * (1 + d) if rule.degradation == "relative" else base + d, k + 1)
    return out


def build_detectors(
    config: AlertsConfig,
    names: Iterable[tuple[str, str]],
    baseline: Baseline,
    reference_groups: Mapping[str, str] | None = None,
) -> Layout:
    """The detectors of one model with groups ``names`` ((attribute, group) per index)."""
    pol = config.policy
    seq = pol.sequential
    names = list(names)
    by_attr: dict[str, list[int]] = {}
    for i, (a, _) in enumerate(names):
        by_attr.setdefault(a, []).append(i)
    refs = reference_groups or {}
    raw: dict[tuple, DetectorSpec] = {}
    machines: list[tuple[str, str]] = []
    series: dict[tuple[str, str, str, int], int] = {}

    def add(kind, metric, attr, g, h, null, tier, sub=0) -> None:
        mkey = (metric, attr)
        if mkey not in machines:
            machines.append(mkey)
        skey = (metric, attr, names[g][1], tier)
        s = series.setdefault(skey, len(series))
        if kind == "ratio":
            if null <= 0:
                return
            alts = [null * f for f in seq.ratio_alternatives]
        elif kind == "rate":
            if null <= 0:
                return
            alts = [null - a for a in seq.accuracy_alternatives if null - a > 1e-3]
        else:
            if null >= 1:
                return
            alts = [null + a for a in seq.gap_alternatives]
        for alt in alts:
            key = (kind, g, h, sub, round(null, 9), round(alt, 9))
            old = raw.get(key)
            if old is None or old.tier < tier:
                raw[key] = DetectorSpec(kind, g, h, null, alt, tier, machines.index(mkey), s, sub)

    for attr, idxs in sorted(by_attr.items()):
        intersectional = "," in attr
        pairs = [(g, h) for g in idxs for h in idxs if g != h]
        for metric, rule in pol.rules.items():
            if not rule.enabled:
                continue
            thresholds = pol.degradation_overrides.get(metric, pol.degradation)
            levels = _levels(rule, metric, baseline(metric, attr), thresholds)
            below: dict[float, int] = dict(levels) if METRICS[metric] == "low" else {}
            above: dict[float, int] = dict(levels) if METRICS[metric] == "high" else {}
            for gd in rule.guards:
                if gd.intersectional is not None and gd.intersectional != intersectional:
                    continue
                if gd.below is not None:
                    below[round(gd.below, 9)] = max(below.get(round(gd.below, 9), 0), gd.tier)
                if gd.above is not None:
                    above[round(gd.above, 9)] = max(above.get(round(gd.above, 9), 0), gd.tier)
            if metric in ("demographic_parity_ratio", "disparate_impact"):
                ref = refs.get(attr) if metric == "disparate_impact" else None
                ref_i = next((i for i in idxs if names[i][1] == ref), None) if ref else None
                for c, tier in below.items():
                    for g, h in pairs if ref_i is None else [(g, ref_i) for g in idxs if g != ref_i]:
                        add("ratio", metric, attr, g, h, c, tier)
                for c, tier in above.items():  # p_g ≤ above·p_h  ⇔  p_h ≥ p_g / above
                    if c <= 1 and ref_i is None:
                        continue
                    for g, h in pairs if ref_i is None else [(g, ref_i) for g in idxs if g != ref_i]:
                        add("ratio", metric, attr, h, g, 1.0 / c, tier)
            elif metric == "equalized_odds_gap":
                for d, tier in above.items():
                    for g, h in pairs:
                        for sub in (0, 1):
                            add("diff", metric, attr, g, h, d, tier, sub)
            elif metric == "expected_calibration_error":
                for d, tier in above.items():
                    for g in idxs:
                        for sign in (1, -1):
                            add("bias", metric, attr, g, -1, d, tier, sign)
            elif metric == "accuracy":
                for a, tier in below.items():
                    for g in idxs:
                        add("rate", metric, attr, g, -1, a, tier)
    specs = sorted(raw.values(), key=lambda s: (s.machine, s.series))
    used = sorted({s.machine for s in specs})
    remap = {m: i for i, m in enumerate(used)}
    order = sorted(series, key=series.get)
    sused = sorted({s.series for s in specs})
    sremap = {k: i for i, k in enumerate(sused)}
    specs = [
        DetectorSpec(s.kind, s.g, s.h, s.null, s.alt, s.tier, remap[s.machine], sremap[s.series], s.sub) for s in specs
    ]
    starts = np.searchsorted(np.array([s.machine for s in specs], int), np.arange(len(used)))
    return Layout(specs, [machines[m] for m in used], [order[k] for k in sused], names, starts)


def thresholds(config: AlertsConfig, layout: Layout, interval: float) -> np.ndarray:
    """``log(A_t K_t)`` per detector (A_t = tier budget / interval, K_t = tier-t detectors)."""
    tiers = np.array([s.tier for s in layout.specs], int)
    out = np.zeros(len(tiers))
    for t in (1, 2, 3):
        k = int((tiers == t).sum())
        if k:
            out[tiers == t] = math.log(config.budget.seconds(t) / interval * k)
    return out


class ModelEvidence:
    """The detectors, their CUSUMs and the state machines of one model (over ``batch`` streams)."""

    def __init__(
        self,
        config: AlertsConfig,
        *,
        interval: float,
        batch: int = 1,
        reference_groups: Mapping[str, str] | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval: must be > 0 seconds, got {interval!r}")
        self.config = config
        self.interval = float(interval)
        self.batch = batch
        self.reference_groups = dict(reference_groups or {})
        self.layout: Layout | None = None
        self.signature: tuple | None = None
        self.bank: EvidenceBank | None = None
        self.tiers: VectorTiers | None = None
        self.last: np.ndarray | None = None  # cumulative tables of the last evaluation (flattened)
        self.threshold = np.zeros(0)

    def _relayout(self, names: list[tuple[str, str]], baseline: Baseline) -> None:
        cfg = self.config
        base_sig = tuple(
            (m, a, baseline(m, a)) for m in sorted(cfg.policy.rules) for a in sorted({x for x, _ in names})
        )
        sig = (tuple(names), base_sig)
        if sig == self.signature:
            return
        layout = build_detectors(cfg, names, baseline, self.reference_groups)
        bank = EvidenceBank(layout.specs, groups=len(names), batch=self.batch)
        tiers = VectorTiers(batch=self.batch, machines=len(layout.machines), clear_for=cfg.policy.clear_for)
        if self.layout is not None:  # carry the evidence and states that still exist
            old = self.layout

            def dkey(lay, s):
                return (s.kind, lay.names[s.g], lay.names[s.h] if s.h >= 0 else None, s.sub, s.null, s.alt, s.tier)

            prev = {dkey(old, s): i for i, s in enumerate(old.specs)}
            for i, s in enumerate(layout.specs):
                j = prev.get(dkey(layout, s))
                if j is not None:
                    bank.S[:, i] = self.bank.S[:, j]
                    bank.seen[:, i] = self.bank.seen[:, j]
            mprev = {m: i for i, m in enumerate(old.machines)}
            for i, m in enumerate(layout.machines):
                j = mprev.get(m)
                if j is not None:
                    for a in ("state", "down_len", "down_max", "missing"):
                        getattr(tiers, a)[:, i] = getattr(self.tiers, a)[:, j]
        self.layout, self.signature, self.bank, self.tiers = layout, sig, bank, tiers
        self.threshold = thresholds(cfg, layout, self.interval)

    def step(
        self,
        names: list[tuple[str, str]],
        dec: np.ndarray,
        lab: np.ndarray,
        cal_n: np.ndarray,
        cal_s: np.ndarray,
        cal_l: np.ndarray,
        baseline: Baseline,
    ) -> np.ndarray | None:
        """Feed the *cumulative* counts ``(batch, G, …)``; returns the machine states ``(batch, M)``.

        ``dec (batch, G, 2)``, ``lab (batch, G, 2, 2)``; ``cal_n``/``cal_s``/``cal_l (batch, G, bins)``:
        labeled decisions, score and label sums per score bin. The first call (and a call after
        the counts went down: a restart, or after the number of bins changed) only records the
        counts. Groups are matched by name, so ``names`` may grow between calls.
        """
        if self.layout is not None and list(names[: len(self.layout.names)]) != self.layout.names:
            order = {n: i for i, n in enumerate(names)}
            keep = [order[n] for n in self.layout.names if n in order]
            rest = [i for i, n in enumerate(names) if n not in set(self.layout.names)]
            perm = keep + rest
            names = [names[i] for i in perm]
            dec, lab, cal_n, cal_s, cal_l = (x[:, perm] for x in (dec, lab, cal_n, cal_s, cal_l))
        self._relayout(list(names), baseline)
        g = len(names)
        bins = cal_n.shape[2]
        cum = np.concatenate(
            [dec.reshape(self.batch, g, -1), lab.reshape(self.batch, g, -1), cal_n, cal_s, cal_l], axis=2
        ).astype(float)
        last = self.last
        if last is not None and last.shape[2] != cum.shape[2]:
            last = None  # other bins (or memory saved before bins were read): start from these counts
        if last is not None and last.shape[1] < g:
            last = np.concatenate([last, np.zeros((self.batch, g - last.shape[1], last.shape[2]))], axis=1)
        self.last = cum
        if last is None or (cum < last - 1e-6).any():
            return None
        d = cum - last
        c = d[..., 6:]
        inc = Increment.from_tables(
            d[..., 0:2],
            d[..., 2:6].reshape(self.batch, g, 2, 2),
            c[..., :bins],
            c[..., bins : 2 * bins],
            c[..., 2 * bins :],
        )
        return self.judge(inc)

    def judge(self, inc: Increment) -> np.ndarray:
        """One evaluation from an increment: CUSUMs, then the state machines."""
        lay = self.layout
        stat = self.bank.update(inc)
        if not len(lay.specs):
            return self.tiers.state
        tier = self.bank.tier[None, :]
        raised = np.maximum.reduceat(np.where(stat - self.threshold >= 0, tier, 0), lay.starts, axis=1)
        hold = np.maximum.reduceat(
            np.where(stat - self.config.policy.sequential.hold_fraction * self.threshold >= 0, tier, 0),
            lay.starts,
            axis=1,
        )
        sufficient = np.logical_or.reduceat(self.bank.seen, lay.starts, axis=1)
        return self.tiers.update(raised, hold, sufficient)

    def series_values(self) -> list[tuple[str, str, str, int, float]]:
        """(metric, attribute, group, tier, max CUSUM statistic) of stream 0, per evidence series."""
        if self.layout is None or not len(self.layout.specs):
            return []
        ser = np.array([s.series for s in self.layout.specs], int)
        best = np.zeros(len(self.layout.series))
        np.maximum.at(best, ser, self.bank.S[0])
        return [(*self.layout.series[i], float(best[i])) for i in range(len(best))]

    def tier_thresholds(self) -> dict[int, float]:
        if self.layout is None:
            return {}
        return {s.tier: float(self.threshold[i]) for i, s in enumerate(self.layout.specs)}

    def deciding(self, machine: int) -> tuple[DetectorSpec, float, float] | None:
        """The detector of ``machine`` (stream 0) furthest past its threshold: (spec, S, threshold)."""
        lay = self.layout
        lo = int(lay.starts[machine])
        hi = int(lay.starts[machine + 1]) if machine + 1 < len(lay.starts) else len(lay.specs)
        if hi <= lo:
            return None
        s = self.bank.S[0, lo:hi]
        r = s / self.threshold[lo:hi]
        j = int(np.argmax(np.where(s >= self.threshold[lo:hi], self.bank.tier[lo:hi] + r, r)))
        return lay.specs[lo + j], float(s[j]), float(self.threshold[lo + j])


def counts_from_snapshot(snap: Snapshot) -> dict[str, tuple[list[tuple[str, str]], tuple[np.ndarray, ...]]]:
    """Each model's cumulative counts from the snapshot's counter families.

    Returns ``{model: (names, (dec (1,G,2), lab (1,G,2,2), cal_n, cal_s, cal_l (1,G,bins)))}`` with
    groups in first-seen order of ``fairness_decisions_total`` / ``fairness_outcomes_total``.
    A snapshot the engine built carries these tables already (``snap.counts``, the same values);
    one put together elsewhere (merged partials) is read from its samples.
    """
    if snap.counts is not None:
        return {
            m: (list(c.names), (c.dec[None], c.lab[None], c.cal_n[None], c.cal_s[None], c.cal_l[None]))
            for m, c in snap.counts.items()
        }
    acc: dict[str, dict[tuple[str, str], list]] = {}
    cal = (
        "fairness_calibration_count_total",
        "fairness_calibration_score_sum_total",
        "fairness_calibration_label_sum_total",
    )
    bins = 1
    for s in snap.samples:
        name = s.name
        if name not in ("fairness_decisions_total", "fairness_outcomes_total") and name not in cal:
            continue
        lab = s.labels
        per = acc.setdefault(lab["model"], {})
        row = per.get((lab["attribute"], lab["group"]))
        if row is None:
            row = per[(lab["attribute"], lab["group"])] = [np.zeros(2), np.zeros((2, 2)), {}, {}, {}]
        if name == "fairness_decisions_total":
            row[0][int(lab["decision"])] = s.value
        elif name == "fairness_outcomes_total":
            row[1][int(lab["decision"]), int(lab["label"])] = s.value
        else:
            b = int(lab["bin"])
            bins = max(bins, b + 1)
            row[2 + cal.index(name)][b] = s.value
    out = {}
    for model, per in acc.items():
        names = list(per)
        rows = list(per.values())
        tables = []
        for k in (2, 3, 4):
            t = np.zeros((1, len(rows), bins))
            for j, r in enumerate(rows):
                for b, v in r[k].items():
                    t[0, j, b] = v
            tables.append(t)
        out[model] = (
            names,
            (np.array([r[0] for r in rows])[None], np.array([r[1] for r in rows])[None], *tables),
        )
    return out
