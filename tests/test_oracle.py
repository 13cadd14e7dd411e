"""Oracle and property tests: the engine's windows and metrics equal a batch recomputation.

Every metric is compared with fairlearn (MetricFrame, demographic_parity_ratio,
equalized_odds_difference) or a direct numpy recomputation from the raw events
of the same window, to 1e-12.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    selection_rate,
)
from fairwatch.monitor.engine import Engine, EngineSettings
from fairwatch.monitor.stats import GroupCounts, calibration_bin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T0 = 1_800_000_000.0
RACES = ["White", "Black", "Hispanic", "Asian"]
SEXES = ["Male", "Female"]


def decision(i, ts, score, dec, race, sex, label=None, model="loan"):
    attrs = {"race": race, "sex": sex}
    return orjson.dumps(
        {
            "schema": "decision/v1",
            "decision_id": f"d{i}",
            "model": model,
            "model_version": "v3",
            "ts": ts,
            "score": score,
            "decision": dec,
            "attributes": attrs,
            "label": label,
        }
    )


def outcome(i, ts, label, model="loan"):
    return orjson.dumps({"schema": "outcome/v1", "decision_id": f"d{i}", "model": model, "ts": ts, "label": label})


event = st.tuples(
    st.floats(0, 3 * 3600, allow_nan=False),  # time offset: spans > the 1h window
    st.floats(0, 1, allow_nan=False),
    st.integers(0, 1),
    st.sampled_from(RACES),
    st.sampled_from(SEXES),
    st.sampled_from([None, 0, 1]),  # inline label
    st.sampled_from([None, 0, 1]),  # later outcome
)


def run(events, cuts, *, settings_=None, resend=0):
    s = settings_ or EngineSettings(
        windows=("1h", "2h"), buckets=12, min_decisions=1, min_labeled=1, allowed_lateness=600.0
    )
    eng = Engine(s)
    raws = [decision(i, T0 + e[0], e[1], e[2], e[3], e[4], e[5]) for i, e in enumerate(events)]
    raws += raws[:resend]  # re-delivered decisions: must be counted once
    outs = [outcome(i, T0 + 4 * 3600, e[6]) for i, e in enumerate(events) if e[6] is not None and e[5] is None]
    bounds = sorted({0, len(raws), *[c % (len(raws) + 1) for c in cuts]})
    for a, b in zip(bounds, bounds[1:], strict=False):
        eng.process(decisions=raws[a:b])
    eng.process(outcomes=outs)
    return eng


def accepted_mask(events, lateness, span):
    """Sequential lateness rule, event by event (the definition, not the vectorised code)."""
    mx = -math.inf
    out = []
    for e in events:
        ts = T0 + e[0]
        mx = max(mx, ts)
        out.append(ts >= mx - lateness - span)
    return np.array(out, bool)


def frame(events):
    a = np.array([(T0 + e[0], e[1], e[2]) for e in events], float).reshape(-1, 3)
    race = np.array([e[3] for e in events])
    sex = np.array([e[4] for e in events])
    label = np.array([e[5] if e[5] is not None else (e[6] if e[6] is not None else -1) for e in events])
    return a[:, 0], a[:, 1], a[:, 2].astype(int), race, sex, label


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=1, max_size=250), st.lists(st.integers(0, 10_000), max_size=5))
def test_window_equals_recomputation_from_raw_events(events, cuts):
    eng = run(events, cuts)
    ts, score, dec, race, sex, label = frame(events)
    ok = accepted_mask(events, 600.0, 2 * 3600.0)
    st_ = eng.models["loan"]
    for ring in st_.rings:
        n = ring.spec.buckets
        k = np.floor(ts / ring.spec.width).astype(int)
        inwin = ok & (k > ring.head - n) & (k <= ring.head)
        counts = eng.window_counts("loan", ring.spec.name)
        for col, values in (("race", race), ("sex", sex), ("race,sex", np.char.add(np.char.add(race, ","), sex))):
            for g in np.unique(values):
                m = inwin & (values == g)
                c = counts.get((col, str(g)), GroupCounts.empty())
                assert c.n == m.sum()
                assert c.favorable == (dec[m] == 1).sum()
                lm = m & (label >= 0)
                assert c.n_labeled == lm.sum()
                for d in (0, 1):
                    for y in (0, 1):
                        assert c.labeled[d, y] == (lm & (dec == d) & (label == y)).sum()
                b = calibration_bin(score[lm], 10)
                assert np.array_equal(c.cal_n, np.bincount(b, minlength=10))
                np.testing.assert_allclose(c.cal_s, np.bincount(b, weights=score[lm], minlength=10), rtol=0, atol=1e-12)
                if lm.any():
                    ece = (
                        np.abs(
                            np.bincount(b, weights=label[lm], minlength=10)
                            - np.bincount(b, weights=score[lm], minlength=10)
                        ).sum()
                        / lm.sum()
                    )
                    assert c.expected_calibration_error == pytest.approx(ece, abs=1e-12)
                    acc = (dec[lm] == label[lm]).mean()
                    assert c.accuracy == pytest.approx(acc, abs=1e-12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=2, max_size=250), st.lists(st.integers(0, 10_000), max_size=5))
def test_metrics_equal_fairlearn(events, cuts):
    eng = run(events, cuts)
    snap = eng.snapshot()
    ts, score, dec, race, sex, label = frame(events)
    ok = accepted_mask(events, 600.0, 2 * 3600.0)
    for ring in eng.models["loan"].rings:
        k = np.floor(ts / ring.spec.width).astype(int)
        inwin = ok & (k > ring.head - ring.spec.buckets) & (k <= ring.head)
        w = ring.spec.name
        for col, values in (("race", race), ("sex", sex)):
            sf = values[inwin]
            y_pred = dec[inwin]
            if len(sf) < 2:  # fairlearn squeezes a single sample to 0-d and refuses it
                continue
            mf = MetricFrame(metrics=selection_rate, y_true=y_pred, y_pred=y_pred, sensitive_features=sf)
            for g, v in mf.by_group.items():
                got = snap.value("fairness_selection_rate", window=w, attribute=col, group=str(g))
                assert got == pytest.approx(v, abs=1e-12)
            got = snap.value("fairness_demographic_parity_ratio", window=w, attribute=col)
            if len(np.unique(sf)) >= 2 and y_pred.any():
                exp = demographic_parity_ratio(y_pred, y_pred, sensitive_features=sf)
                assert got == pytest.approx(exp, abs=1e-12)
                exp_d = demographic_parity_difference(y_pred, y_pred, sensitive_features=sf)
                got_d = snap.value("fairness_demographic_parity_difference", window=w, attribute=col)
                assert got_d == pytest.approx(exp_d, abs=1e-12)
            # Equalized odds: fairlearn needs every group to have both labels.
            lm = inwin & (label >= 0)
            yt, yp, sfl = label[lm], dec[lm], values[lm]
            groups = np.unique(sfl)
            if (
                len(yt) >= 2
                and len(groups) >= 2
                and all((yt[sfl == g] == 1).any() and (yt[sfl == g] == 0).any() for g in groups)
            ):
                exp = equalized_odds_difference(yt, yp, sensitive_features=sfl)
                got = snap.value("fairness_equalized_odds_gap", window=w, attribute=col)
                assert got == pytest.approx(exp, abs=1e-12)


def test_min_sample_rules_exclude_small_groups():
    events = [(i, 0.5, i % 2, "White", "Male", None, None) for i in range(120)]
    events += [(200 + i, 0.5, 0, "Black", "Male", None, None) for i in range(20)]
    eng = run(events, [], settings_=EngineSettings(windows=("1h",), min_decisions=100, min_labeled=50))
    snap = eng.snapshot()
    assert snap.value("fairness_group_samples", attribute="race", group="Black", kind="decisions") == 20
    assert snap.value("fairness_selection_rate", attribute="race", group="Black") is None
    # one sufficient group only: no ratio at all rather than a misleading 1.0
    assert snap.value("fairness_demographic_parity_ratio", attribute="race") is None
    assert snap.value("fairness_selection_rate", attribute="race", group="White") == 0.5


group_counts = st.lists(
    st.tuples(st.floats(0, 1, allow_nan=False), st.integers(0, 1), st.sampled_from([None, 0, 1])),
    max_size=30,
).map(lambda rows: _counts(rows))


def _counts(rows):
    c = GroupCounts.empty()
    for s, d, y in rows:
        c.update(score=s, decision=d, label=y)
    return c


def _close(a: GroupCounts, b: GroupCounts) -> bool:
    return (
        np.array_equal(a.decisions, b.decisions)
        and np.array_equal(a.labeled, b.labeled)
        and np.array_equal(a.cal_n, b.cal_n)
        and np.array_equal(a.cal_l, b.cal_l)
        and np.allclose(a.cal_s, b.cal_s, rtol=0, atol=1e-12)
    )


@given(group_counts, group_counts, group_counts)
def test_merge_is_associative_and_commutative(a, b, c):
    assert _close((a + b) + c, a + (b + c))
    assert _close(a + b, b + a)
    assert _close(a + GroupCounts.empty(), a)


@given(group_counts, st.floats(0, 1, allow_nan=False), st.integers(0, 1), st.sampled_from([None, 0, 1]))
def test_revert_undoes_update(c, s, d, y):
    before = c.copy()
    c.update(score=s, decision=d, label=y)
    c.revert(score=s, decision=d, label=y)
    assert _close(c, before)


@given(
    st.lists(
        st.tuples(st.floats(0, 1, allow_nan=False), st.integers(0, 1), st.sampled_from([None, 0, 1])), max_size=60
    ),
    st.integers(0, 60),
)
def test_merge_equals_single_pass(rows, cut):
    whole = _counts(rows)
    assert _close(_counts(rows[:cut]) + _counts(rows[cut:]), whole)


def test_label_maturity_shifts_outcome_window():
    # Decisions over 3 h; maturity 1 h: outcome metrics use buckets ending 1 h before the head.
    s = EngineSettings(windows=("1h",), buckets=6, min_decisions=1, min_labeled=1, label_maturity={"loan": 3600.0})
    eng = Engine(s)
    raws = [decision(i, T0 + i * 60.0, 0.9, 1, "White", "Male", label=1 if i < 120 else 0) for i in range(180)]
    eng.process(decisions=raws)
    snap = eng.snapshot()
    # The last hour (i ≥ 120) has label 0 → TPR undefined, FPR 1. The matured hour (60 ≤ i < 120) has label 1.
    assert snap.value("fairness_true_positive_rate", attribute="race", group="White") == 1.0
    assert snap.value("fairness_false_positive_rate", attribute="race", group="White") is None
    assert snap.value("fairness_labeled_share", attribute="race", group="White") == 1.0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=1, max_size=200), st.lists(st.integers(0, 10_000), max_size=4))
def test_spill_tier_gives_the_same_result_as_memory(tmp_path_factory, events, cuts):
    """A tiny in-memory capacity with the SQLite tier behind it changes nothing."""
    base = dict(windows=("1h", "2h"), buckets=12, min_decisions=1, min_labeled=1, allowed_lateness=600.0)
    mem = run(events, cuts, settings_=EngineSettings(**base))
    path = tmp_path_factory.mktemp("spill") / "join.sqlite"
    spill = run(events, cuts, settings_=EngineSettings(**base, join_capacity=7, join_spill_path=str(path)), resend=5)
    a, b = mem.snapshot(), spill.snapshot()
    ignore = {"fairwatch_events_total"}
    assert {
        (s.name, tuple(sorted(s.labels.items())), round(s.value, 9)) for s in a.samples if s.name not in ignore
    } == {(s.name, tuple(sorted(s.labels.items())), round(s.value, 9)) for s in b.samples if s.name not in ignore}
    dups = b.value("fairwatch_events_total", result="duplicate", reason="same") or 0
    late = sum(s.value for s in b.select("fairwatch_events_total") if s.labels["result"] == "late")
    # the 5 re-sent decisions are recognised even after they moved to SQLite (unless they were late)
    assert dups + late - (a.value("fairwatch_events_total", result="late", reason="too_old") or 0) == min(
        5, len(events)
    )


def test_outcome_before_any_decision_of_its_model_still_joins():
    """Regression: an early outcome used to carry a watermark of -inf and was orphaned at the
    next expiry sweep, before its decision arrived in a later batch."""
    eng = Engine(EngineSettings(windows=("1h",), min_decisions=1, min_labeled=1))
    eng.process(outcomes=[outcome(99, T0 + 100.0, 1)])
    eng.process(decisions=[decision(i, T0 + 60.0 * i, 0.8, 1, "White", "Male") for i in range(30)])
    eng.process(decisions=[decision(99, T0 + 1800.0, 0.8, 1, "Black", "Male")])
    snap = eng.snapshot()
    assert snap.value("fairness_group_samples", attribute="race", group="Black", kind="labeled") == 1
    assert snap.value("fairwatch_outcome_joins_total", result="orphaned") == 0
    assert snap.value("fairwatch_outcome_joins_total", result="joined") == 1


def test_early_outcome_superseded_by_an_inline_label_is_counted_once():
    eng = Engine(EngineSettings(windows=("1h",), min_decisions=1, min_labeled=1))
    eng.process(outcomes=[outcome(7, T0 + 10.0, 0)])
    eng.process(decisions=[decision(7, T0, 0.9, 1, "White", "Male", label=1)])
    snap = eng.snapshot()
    events = {(s.labels["topic"], s.labels["result"]): s.value for s in snap.select("fairwatch_events_total")}
    assert events == {("fairness.outcomes", "ok"): 1, ("fairness.decisions", "ok"): 1}
    assert snap.value("fairwatch_outcome_joins_total", result="superseded") == 1
    assert snap.value("fairness_outcomes_total", attribute="race", group="White", decision="1", label="1") == 1
    assert snap.value("fairness_outcomes_total", attribute="race", group="White", decision="1", label="0") == 0
