"""How fast any detector with the stated guarantee can be: oracle CUSUMs on the benchmark's streams.

A detector whose false-alarm run length is at least ``A`` under *every* stream of the null
(for the rollback: true DI ≥ 0.80; for calibration Tier 2: the group's mean miss ≤ 0.08)
cannot, on a stream ``P``, be faster on average than about ``log A / KL(P ‖ Q)`` observations
for *any* null stream ``Q`` (Lorden 1971), so the null stream closest to ``P`` in KL, the
*least favourable* one, gives the sharpest limit. The CUSUM of the exact likelihood ratio of
``P`` against that ``Q`` reaches it: it knows every rate of the drifted stream and of the
boundary, which no monitor does. Its delay, measured on the same streams as ours with the
same alarm threshold, is therefore a floor for every valid detector of those streams.

``dp-drop`` (count level, the streams of ``detection.py --part drops``, paired seed by seed
with ours): ``Q`` is the closest race-rate vector with every ratio ≥ 0.80 (all race groups,
weighted by their decisions; the other attributes' ratios are not touched by the drift).

``calibration-drift`` (event level, the simulator streams of ``detection.py --part cal``, same
seeds): each label of the drifted group has its true repayment probability ``p_i`` (the
simulator's, which the oracle reads) and its score ``s_i``; ``Q`` gives every label the
outcome probability ``q_i`` closest to ``p_i`` in KL subject to a group mean miss
``mean(s_i − q_i)`` of exactly 0.08 (a Lagrange multiplier, solved once on a long run).

The oracles are run at two thresholds: ours (``log(A·K)``, the budget split over the model's
``K`` detectors of the tier, as the guarantee over every group, attribute and metric requires)
and ``log A`` alone (one series watched, nothing else guarded).
"""

from __future__ import annotations

import math
import time

import detection_counts as dc
import numpy as np
from fairwatch.alerts.evidence import _closest  # the product's closest-null rate
from scipy.optimize import minimize

__all__ = ["dp_limit", "calibration_limit", "kl_bernoulli"]

_EPS = 1e-12


def kl_bernoulli(p, q):
    """KL(Bernoulli(p) ‖ Bernoulli(q)), elementwise, in nats."""
    p = np.clip(np.asarray(p, float), _EPS, 1 - _EPS)
    q = np.clip(np.asarray(q, float), _EPS, 1 - _EPS)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def _llr(p, q) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood ratio of P against Q of one favourable / unfavourable observation."""
    p = np.clip(np.asarray(p, float), _EPS, 1 - _EPS)
    q = np.clip(np.asarray(q, float), _EPS, 1 - _EPS)
    return np.log(p / q), np.log((1 - p) / (1 - q))


def closest_ratio_null(p: np.ndarray, w: np.ndarray, c: float) -> np.ndarray:
    """The rates ``q`` with ``min q / max q ≥ c`` closest to ``p`` in Σ w·KL(p ‖ q)."""
    cons = [
        {"type": "ineq", "fun": (lambda q, i=i, j=j: q[i] - c * q[j])}
        for i in range(len(p))
        for j in range(len(p))
        if i != j
    ]
    res = minimize(
        lambda q: float((w * kl_bernoulli(p, q)).sum()),
        x0=np.full(len(p), float(np.average(p, weights=w))),
        bounds=[(1e-6, 1 - 1e-6)] * len(p),
        constraints=cons,
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    if not res.success:
        raise RuntimeError(f"closest null: {res.message}")
    return res.x


def _cusum_first(increments, threshold: float, t: float, s: np.ndarray, first: np.ndarray) -> None:
    """One CUSUM step for every seed (in place): S ← max(0, S + increment); first crossing time."""
    np.maximum(s + increments, 0.0, out=s)
    hit = (s >= threshold) & np.isnan(first)
    first[hit] = t


def dp_limit(
    before: dc.Cells,
    after: dc.Cells,
    *,
    seeds: int,
    thresholds: dict[str, float],
    drift_at: float,
    horizon: float,
    step_s: float,
    rate: float,
    seed: int,
    guard: float = 0.8,
    attribute: str = "race",
) -> dict:
    """Oracle CUSUM delays to the DI guard on the count stream ``dc.run`` draws with ``seed``."""
    names, member = before.groups()
    idx = [i for i, (a, _) in enumerate(names) if a == attribute]
    wa = member * after.share
    p_after = ((wa * after.p).sum(1) / wa.sum(1))[idx]
    share = wa.sum(1)[idx]
    q = closest_ratio_null(p_after, share, guard)
    up, down = _llr(p_after, q)
    kl_per_decision = float((share * kl_bernoulli(p_after, q)).sum())
    # the same draws as dc.run(before, …, seed=seed, drift=(drift_at, after)) with no rollback
    stream = dc.CountStream(before, seeds, rate, step_s, max(1, round(600.0 / step_s)), seed)
    s = {k: np.zeros(seeds) for k in thresholds}
    first = {k: np.full(seeds, np.nan) for k in thresholds}
    prev = np.zeros((seeds, len(idx), 2))
    drifted = False
    for i in range(int((drift_at + horizon) // step_s)):
        t = (i + 1) * step_s
        if not drifted and t > drift_at:
            stream.set_rates(after.p, after.label_rate, np.ones(seeds, bool))
            drifted = True
        dec = stream.step()[0][:, idx, :]
        new, prev = dec - prev, dec
        inc = (new[..., 1] * up + new[..., 0] * down).sum(1)
        for k, a in thresholds.items():
            _cusum_first(inc, a, t, s[k], first[k])
        if all(not np.isnan(f).any() for f in first.values()):
            break
    return {
        "groups": [names[i][1] for i in idx],
        "rates_after": p_after.round(4).tolist(),
        "decision_share": share.round(4).tolist(),
        "least_favourable_null": q.round(4).tolist(),
        "kl_nats_per_decision": kl_per_decision,
        "delays_s": {k: [None if np.isnan(x) else float(x - drift_at) for x in f] for k, f in first.items()},
    }


def boundary_probability(p: np.ndarray, s: np.ndarray, delta: float) -> tuple[np.ndarray, float]:
    """Per label, the outcome probability closest to ``p`` in KL with ``mean(s − q) = delta``.

    Stationarity of Σ KL(p_i ‖ q_i) + μ Σ q_i gives ``(q − p) / (q (1 − q)) = μ``, a quadratic
    in ``q`` per label; μ is found by bisection on the mean miss.
    """
    p = np.clip(p, 1e-9, 1 - 1e-9)

    def q_of(mu: float) -> np.ndarray:
        return _closest(p, mu)

    if (s - p).mean() <= delta:
        return p, 0.0
    lo, hi = 0.0, 1e6
    for _ in range(200):
        mu = math.sqrt(lo * hi) if lo > 0 else hi / 1e6
        if (s - q_of(mu)).mean() > delta:
            lo = mu
        else:
            hi = mu
        if hi - lo < 1e-12 * hi:
            break
    return q_of(hi), hi


def _truth_recorder(sim):
    """Wrap a simulator so that each drifted decision's (true probability, score) is kept by index."""
    truth: dict[int, tuple[float, float]] = {}
    score = sim._score

    def scored(apps):
        s, d = score(apps)
        active = sim._active(apps)
        if active.any():
            pairs = zip(apps.p_true[active].tolist(), s[active].tolist(), strict=True)
            truth.update(zip(apps.index[active].tolist(), pairs, strict=True))
        return s, d

    sim._score = scored
    take = sim._take_outcomes
    arrived: list[np.ndarray] = []

    def outcomes(target):
        ms, index, label = take(target)
        arrived.append(np.stack([index, label]) if len(index) else np.zeros((2, 0), np.int64))
        return ms, index, label

    sim._take_outcomes = outcomes
    return truth, arrived


def calibration_limit(
    make_sim,
    *,
    seeds: list[int],
    thresholds: dict[str, float],
    drift_at: float,
    horizon: float,
    step_s: float,
    delta: float = 0.08,
    learn_s: float = 20_000.0,
) -> dict:
    """Oracle CUSUM delays to the calibration guard on the simulator streams ``make_sim(seed)``."""
    # the least favourable null, once, from a long run of drifted decisions
    sim = make_sim(10_000 + seeds[0], drift_at=0.0)
    truth, _ = _truth_recorder(sim)
    sim.advance_batch(learn_s)
    p, s = (np.array(v) for v in zip(*truth.values(), strict=True))
    q, mu = boundary_probability(p, s, delta)
    kl = float(kl_bernoulli(p, q).mean())

    def q_for(pi: np.ndarray) -> np.ndarray:
        return _closest(np.clip(pi, 1e-9, 1 - 1e-9), mu)

    delays: dict[str, list[float | None]] = {k: [] for k in thresholds}
    t0 = time.perf_counter()
    for seed in seeds:
        sim = make_sim(seed, drift_at=drift_at)
        truth, arrived = _truth_recorder(sim)
        state = {k: 0.0 for k in thresholds}
        first: dict[str, float | None] = {k: None for k in thresholds}
        for i in range(int((drift_at + horizon) // step_s)):
            arrived.clear()
            sim.advance_batch(step_s)
            t = (i + 1) * step_s
            got = [(truth.pop(j), lab) for a in arrived for j, lab in zip(*a.tolist(), strict=True) if j in truth]
            if got:
                pi = np.array([g[0][0] for g in got])
                lab = np.array([g[1] for g in got])
                up, down = _llr(pi, q_for(pi))
                inc = float(np.where(lab == 1, up, down).sum())
            else:
                inc = 0.0
            for k, a in thresholds.items():
                state[k] = max(0.0, state[k] + inc)
                if first[k] is None and state[k] >= a:
                    first[k] = t - drift_at
            if all(v is not None for v in first.values()):
                break
        for k in thresholds:
            delays[k].append(first[k])
    return {
        "labels_learned_from": len(p),
        "mean_miss_after_drift": float((s - p).mean()),
        "lagrange_multiplier": mu,
        "kl_nats_per_label": kl,
        "delays_s": delays,
        "cpu_s": round(time.perf_counter() - t0, 1),
    }
