"""Sequential evidence: e-values valid at the null boundary, false alarms within budget, golden delays."""

from __future__ import annotations

import numpy as np
import pytest
from fairwatch.alerts.audit import MemoryAuditLog
from fairwatch.alerts.config import AlertsConfig
from fairwatch.alerts.evidence import DetectorSpec, EvidenceBank, Increment, VectorTiers
from fairwatch.alerts.loop import AlertLoop
from fairwatch.alerts.sequential import WINDOW, ModelEvidence, build_detectors
from fairwatch.alerts.tiers import TierMachine
from fairwatch.monitor.engine import Engine, EngineSettings
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay


def _spec(kind, null, alt, sub=0):
    return DetectorSpec(kind=kind, g=0, h=1, null=null, alt=alt, tier=3, machine=0, series=0, sub=sub)


def _mean_e(bank: EvidenceBank, inc: Increment) -> float:
    le, _ = bank.log_e(inc)
    return float(np.exp(le[:, 0]).mean())


@pytest.mark.parametrize("ph,n_g,n_h", [(0.7, 40, 180), (0.3, 13, 62), (0.05, 200, 200), (0.9, 5, 500)])
def test_ratio_e_value_has_mean_at_most_one_on_the_boundary(ph, n_g, n_h):
    """p_g = 0.8 p_h exactly (the worst null point): E[e] <= 1 for the Chernoff e-value."""
    rng = np.random.default_rng(1)
    b = 200_000
    bank = EvidenceBank([_spec("ratio", 0.8, 0.6)], groups=2, batch=b)
    bank.cum_n[:] = [1000, 1000]
    bank.cum_k[:] = [1000 * 0.6 * ph, 1000 * ph]  # the predictable estimate sits at the alternative
    n = np.tile([n_g, n_h], (b, 1))
    k = np.stack([rng.binomial(n_g, 0.8 * ph, b), rng.binomial(n_h, ph, b)], 1)
    assert _mean_e(bank, Increment(n=n, k=k)) <= 1.01
    # and it is a real test: at DI 0.6 the same e-value grows
    k = np.stack([rng.binomial(n_g, 0.6 * ph, b), rng.binomial(n_h, ph, b)], 1)
    assert bank.log_e(Increment(n=n, k=k))[0].mean() > 0


def test_outcome_e_values_have_mean_at_most_one_on_their_boundaries():
    rng = np.random.default_rng(2)
    b = 200_000
    n = np.full((b, 2), 60)
    # EO: TPR_h - TPR_g = 0.12 exactly
    bank = EvidenceBank([_spec("diff", 0.12, 0.27)], groups=2, batch=b)
    tp = np.stack([rng.binomial(60, 0.6, b), rng.binomial(60, 0.72, b)], 1)
    inc = Increment(n=n, k=n, tp=tp, pos=n, fp=np.zeros_like(n), neg=n)
    assert _mean_e(bank, inc) <= 1.01
    # accuracy exactly at the null 0.70
    bank = EvidenceBank([DetectorSpec("rate", 0, -1, 0.70, 0.65, 3, 0, 0)], groups=2, batch=b)
    inc = Increment(n=n, k=n, correct=rng.binomial(60, 0.70, (b, 2)), labeled=n)
    assert _mean_e(bank, inc) <= 1.01
    # calibration: outcomes 0.08 below the scores (score 0.9, outcome rate 0.82)
    bank = EvidenceBank([DetectorSpec("bias", 0, -1, 0.08, 0.13, 2, 0, 0, sub=-1)], groups=2, batch=b)
    lab = rng.binomial(60, 0.82, (b, 2, 1)).astype(float)
    inc = Increment(n=n, k=n, labeled=n, cal_n=n[..., None], cal_s=np.full((b, 2, 1), 60 * 0.9), cal_l=lab)
    assert _mean_e(bank, inc) <= 1.01


SCORES = np.array([0.03, 0.15, 0.35, 0.55, 0.75, 0.88, 0.97])  # mean score of each bin


def _bins(rng, b, n, truth, scores=SCORES):
    """Labels drawn in bins of mean score ``scores`` with outcome rates ``truth`` per bin, as
    the engine's per-bin tables ``(b, 2, bins)`` (group 1 is a bystander)."""
    nb = np.broadcast_to(n, (b, 2, len(scores))).astype(float)
    lab = rng.binomial(nb.astype(int), np.clip(truth, 0, 1)).astype(float)
    return Increment(n=nb.sum(-1), k=nb.sum(-1), labeled=nb.sum(-1), cal_n=nb, cal_s=nb * scores, cal_l=lab)


def _null_points(scores, n, sub, delta):
    """Outcome rates per bin (``n`` labels each) whose mean is the boundary (mean score ∓ δ):
    every bin at its boundary, and two uneven ones: two bins 0.05 past it where a label is
    informative (boundary rate near 0 or 1) and two 0.05 inside where it is not (near 1/2),
    and the reverse. A rate clipped to [0, 1] moves into the null."""
    at = scores + sub * delta
    if len(scores) == 1:
        return {"each bin at the boundary": at}
    tilt = np.zeros(len(scores))
    tilt[[1, 6] if sub < 0 else [0, 5]] = 0.05  # equal labels per bin: the tilts cancel
    tilt[[2, 3]] = -0.05
    return {"each bin at the boundary": at, "uneven": at + sub * tilt, "uneven, reversed": at - sub * tilt}


@pytest.mark.parametrize("scores", [SCORES, np.array([0.85])], ids=["spread", "one-score"])
@pytest.mark.parametrize("sub", [-1, 1])
def test_calibration_e_value_has_mean_at_most_one_on_every_null_point(sub, scores):
    """The null is the *mean* miss ≤ δ: bins may miss by different amounts. On points of the
    boundary (every bin at it, or uneven bins whose mean is at it), E[e] ≤ 1. With one score
    the bound is tight, so a boundary off by 0.01 would fail here; per-bin boundaries (the
    sharper e-value that tests "no bin misses by more than δ") exceed 1 on an uneven point."""
    rng = np.random.default_rng(4)
    b, delta, n = 200_000, 0.08, 30
    bank = EvidenceBank([DetectorSpec("bias", 0, -1, delta, delta + 0.05, 2, 0, 0, sub=sub)], groups=2, batch=b)
    for name, truth in _null_points(scores, n, sub, delta).items():
        inc = _bins(rng, b, n, truth, scores)
        mean = _mean_e(bank, inc)
        assert mean <= 1.01, name
        if len(scores) == 1:
            assert mean > 0.97  # tight: the e-value is not trivially small
        assert bank.log_e(_bins(rng, 1, n, truth, scores))[1].all()  # it did look
        if name == "uneven":  # the per-bin test, q_b = s_b ∓ δ in every bin: not valid here
            p, q = scores + sub * (delta + 0.05), scores + sub * delta
            y = inc.cal_l[:, 0] if sub < 0 else n - inc.cal_l[:, 0]
            p, q = (p, q) if sub < 0 else (1 - p, 1 - q)
            ok = (p > 0) & (q < 1)  # elsewhere a bin's boundary is vacuous: e = 1 there
            p, q, y = p[ok], q[ok], y[:, ok]
            per_bin = (y * np.log(p / q) + (n - y) * np.log((1 - p) / (1 - q))).sum(-1)
            assert np.exp(per_bin).mean() > 1.05


def test_calibration_e_value_gathers_more_than_the_pooled_one_and_hoeffding():
    """The calibration-drift shape: most labels in the top bin (scores near 1, nearly calibrated
    there after the clip at 1), the rest far off. The per-bin e-value grows faster than the
    likelihood ratio on the group's pooled sums (the same alternative, q = mean score − δ),
    which grows much faster than Hoeffding's bound with λ = 4Δ: near 1 a label's variance is
    far below Hoeffding's 1/4."""
    rng = np.random.default_rng(5)
    b, delta, alt = 2_000, 0.08, 0.13
    truth = np.where(SCORES < 0.9, SCORES - 0.15, SCORES - 0.09)
    bank = EvidenceBank([DetectorSpec("bias", 0, -1, delta, alt, 2, 0, 0, sub=-1)], groups=2, batch=b)
    pooled = np.zeros(b)
    hoeffding = np.zeros(b)
    lam = 4 * (alt - delta)
    n = np.array([0, 0, 2, 4, 6, 8, 60])
    for _ in range(30):
        inc = _bins(rng, b, n, truth)
        bank.update(inc)
        labeled, ssum, lsum = inc.labeled[:, 0], inc.cal_s[:, 0].sum(-1), inc.cal_l[:, 0].sum(-1)
        p, q = ssum / labeled - alt, ssum / labeled - delta
        pooled = np.maximum(pooled + lsum * np.log(p / q) + (labeled - lsum) * np.log((1 - p) / (1 - q)), 0.0)
        step = -lam * (lsum - ssum) - (lam * delta + lam * lam / 8) * labeled
        hoeffding = np.maximum(hoeffding + step, 0.0)
    assert np.median(bank.S[:, 0]) > 1.2 * np.median(pooled) > 0
    assert np.median(pooled) > 1.4 * np.median(hoeffding) > 0


def test_vector_tiers_equal_the_tier_machine():
    rng = np.random.default_rng(3)
    b, steps = 64, 300
    vt = VectorTiers(batch=b, machines=1, clear_for=3)
    machines = [TierMachine(for_=1, clear_for=3) for _ in range(b)]
    for _ in range(steps):
        r = rng.integers(0, 4, b) * (rng.random(b) < 0.2)
        h = np.maximum(r, rng.integers(0, 4, b) * (rng.random(b) < 0.5))
        ok = rng.random(b) > 0.1
        got = vt.update(r[:, None], h[:, None], ok[:, None])[:, 0]
        want = [m.update(int(r[i]), int(h[i])) if ok[i] else m.update(None, None) for i, m in enumerate(machines)]
        assert got.tolist() == want


def _two_groups(config: AlertsConfig, batch: int, interval: float = 30.0) -> ModelEvidence:
    ev = ModelEvidence(config, interval=interval, batch=batch)
    return ev


def _cfg(**budget) -> AlertsConfig:
    only_di = {"disparate_impact": {"degradation": "none", "guards": [{"tier": 3, "below": 0.8, "above": 1.25}]}}
    return AlertsConfig.model_validate(
        {"policy": {"rules": only_di}, "budget": budget, "baseline_path": "/nonexistent/b.json"}
    )


def _run(ev: ModelEvidence, rates, steps: int, rng, n=(186, 39)) -> np.ndarray:
    """Feed cumulative counts of two groups; returns the step of the first tier 3 per stream (-1: none)."""
    b = ev.batch
    names = [("race", "White"), ("race", "Black")]
    dec = np.zeros((b, 2, 2))
    zeros2 = np.zeros((b, 2, 2, 2))
    zeros1 = np.zeros((b, 2, 1))
    first = np.full(b, -1)
    for t in range(steps):
        p = rates(t)
        for j in range(2):
            nj = rng.poisson(n[j], b)
            kj = rng.binomial(nj, p[j])
            dec[:, j, 1] += kj
            dec[:, j, 0] += nj - kj
        st = ev.step(names, dec, zeros2, zeros1, zeros1, zeros1, lambda m, a: None)
        if st is not None:
            hit = (st.max(1) >= 3) & (first < 0)
            first[hit] = t
    return first


def test_false_tier3_at_the_di_boundary_stays_within_the_budget():
    """True DI exactly 0.80 with a budget of A = 200 evaluations (30 s x 200): run length >= A.

    Streams are censored at 2,000 evaluations; the run length is estimated as exposure / alarms
    (exposure = evaluations each stream ran before its first alarm, or all 2,000).
    """
    rng = np.random.default_rng(4)
    ev = _two_groups(_cfg(tier3=30 * 200), batch=400)
    first = _run(ev, lambda t: (0.7, 0.56), 2000, rng)
    alarms = int((first >= 0).sum())
    exposure = np.where(first >= 0, first, 2000).sum()
    assert alarms > 0  # the budget is small enough to be measured
    assert exposure / alarms >= 200


def test_tier3_golden_delay_after_a_drop():
    """DI 0.97 → 0.60 at evaluation 100 (186 and 39 decisions per 30 s): tier 3 at evaluation 123."""
    rng = np.random.default_rng(5)
    ev = _two_groups(_cfg(), batch=1)
    first = _run(ev, lambda t: (0.7, 0.68 if t < 100 else 0.42), 200, rng)
    assert first.tolist() == [123]


def test_budget_raises_the_threshold_by_log_ten_for_ten_years():
    names = [("race", g) for g in ("A", "B", "C")]
    lay = build_detectors(_cfg(), names, lambda m, a: None)
    assert len(lay.specs) == 6 * 2  # 6 ordered pairs x 2 alternatives
    one = ModelEvidence(_cfg(), interval=30.0)
    ten = ModelEvidence(_cfg(tier3="3650d"), interval=30.0)
    for ev in (one, ten):
        ev._relayout(names, lambda m, a: None)
    assert ten.tier_thresholds()[3] - one.tier_thresholds()[3] == pytest.approx(np.log(10))
    assert one.tier_thresholds()[3] == pytest.approx(np.log(365 * 86400 / 30 * 12))


def test_alert_loop_exports_evidence_and_rolls_back_on_a_simulated_drop(tmp_path):
    """The whole path: simulator → engine → sequential policy; evidence samples, one tier 3."""
    cfg = AlertsConfig.model_validate({"baseline_path": str(tmp_path / "b.json"), "evaluation_interval": 30})
    loop = AlertLoop(cfg, audit=MemoryAuditLog())
    sim = LoanSimulator(seed=1, rate=10.0, scenario="dp-drop", drift_at=1800.0, delay=OutcomeDelay(median_s=600.0))
    eng = Engine(EngineSettings(windows=("1h",), buckets=12))
    snap = None
    for _ in range(int(3600 / 30)):
        b = sim.advance_batch(30.0)
        eng.process(decisions=b.topic_values(False), outcomes=b.topic_values(True), now=sim.now)
        snap = loop.evaluate(eng.snapshot(now=sim.now), eng)
    t3 = [c for c in loop.changes if c.tier == 3]
    assert t3 and t3[0].metric == "disparate_impact" and t3[0].group == "Black"
    assert t3[0].window == WINDOW and t3[0].evidence >= t3[0].threshold
    assert all(c.at - sim.start > 1800.0 for c in loop.changes if c.tier >= 2)  # nothing before the drop
    ev = [s for s in snap.samples if s.name == "fairness_alert_evidence"]
    assert {s.labels["tier"] for s in ev} == {"2", "3"}
    assert max(s.value for s in ev if s.labels["group"] == "Black" and s.labels["tier"] == "3") >= t3[0].threshold
    thr = {s.labels["tier"]: s.value for s in snap.samples if s.name == "fairness_alert_evidence_threshold"}
    assert "1" not in thr  # no baseline learned or set: no degradation (tier 1) detectors
    assert min(thr.values()) > np.log(365 * 86400 / 30)  # log(A K) > log A
    loop.close()


def test_the_calibration_multiplier_keeps_the_bound_and_finds_the_root():
    """The calibration e-value's multiplier (Illinois steps): ``Σ n_b q_b ≤ target`` at every live
    entry (what validity needs), 0 elsewhere, and log e within 1e-6 of a 60-step bisection's
    (what power needs), over uneven bins, boundaries near either end and empty bins."""
    from fairwatch.alerts.evidence import _boundary_multiplier, _closest

    rng = np.random.default_rng(11)
    for shape_power in (1.0, 4.0, 0.25):
        nb = rng.integers(0, 50, (2, 500, 10)).astype(float) * (rng.random((2, 500, 10)) < 0.7)
        pb = np.clip(rng.random(nb.shape), 1e-4, 1 - 1e-4)
        n, low = nb.sum(-1), (nb * pb).sum(-1)
        target = low + rng.random(n.shape) ** shape_power * (n - low) * 0.999
        live = (n > 0) & (low < target) & (target < n * (1 - 1e-9)) & (rng.random(n.shape) < 0.9)
        mu = _boundary_multiplier(nb, pb, np.where(live, target, 0.0), live)
        assert (mu[~live] == 0).all() and (mu[live] > 0).all()
        assert ((nb * _closest(pb, mu[..., None])).sum(-1)[live] <= target[live]).all()
        lo, hi = np.zeros(n.shape), np.ones(n.shape)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = (nb * _closest(pb, (mid / (1 - mid))[..., None])).sum(-1) <= target
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        ref = lo / (1 - lo)
        lb = rng.binomial(nb.astype(int), pb).astype(float)

        def log_e(m, nb=nb, pb=pb, lb=lb):
            q = _closest(pb, m[..., None])
            return (lb * np.log(pb / q) + (nb - lb) * (np.log1p(-pb) - np.log1p(-q))).sum(-1)

        assert np.abs(log_e(mu) - log_e(ref))[live].max() < 1e-6
        assert np.abs(log_e(ref))[live].max() > 100  # some entries carry a lot of evidence
