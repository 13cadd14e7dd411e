"""The loan-approval simulator: determinism, the docs/events.md wire format, the world model
and every drift scenario, checked on the emitted bytes."""

from __future__ import annotations

import itertools
import math
import re
from datetime import UTC, datetime

import numpy as np
import orjson
import pandas as pd
import pytest
from fairwatch.streaming.simulator import (
    APPROVAL_THRESHOLD,
    DECISIONS_TOPIC,
    DELAY_KINDS,
    MSG_CHOICE,
    OUTCOMES_TOPIC,
    RACE_SHARES,
    SCENARIOS,
    LoanSimulator,
    OutcomeDelay,
    SimEvent,
    write_jsonl,
)

RACES = ("White", "Black", "Hispanic", "Asian")
SEXES = ("Male", "Female")
NOW_DELAY = OutcomeDelay(kind="none", never_share=0.0)  # every label, at once
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
DECISION_KEYS = {
    "schema",
    "decision_id",
    "model",
    "model_version",
    "ts",
    "score",
    "decision",
    "attributes",
    "features",
    "label",
}
FEATURE_KEYS = {"credit_score", "income", "zip_code", "employment_history"}


# --- helpers ---------------------------------------------------------------------------
def parse_ts(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def check_event(event: SimEvent) -> dict:
    """A local docs/events.md checker (the project's validator is written elsewhere)."""
    obj = orjson.loads(event.value)
    assert orjson.dumps(obj) == event.value  # exactly what orjson writes
    assert event.key == b"loan-approval" and obj["model"] == "loan-approval"
    assert isinstance(obj["decision_id"], str) and 1 <= len(obj["decision_id"]) <= 128
    assert TS_RE.match(obj["ts"]), obj["ts"]
    assert parse_ts(obj["ts"]) == pytest.approx(event.time, abs=1e-6)
    assert 946684800.0 <= event.time < 4102444800.0
    if event.topic == DECISIONS_TOPIC:
        assert set(obj) == DECISION_KEYS and obj["schema"] == "decision/v1"
        assert isinstance(obj["model_version"], str)
        score = obj["score"]
        assert type(score) is float and math.isfinite(score) and 0.0 <= score <= 1.0
        assert obj["decision"] in (0, 1) and type(obj["decision"]) is int
        assert obj["attributes"] == {
            "race": obj["attributes"]["race"],
            "sex": obj["attributes"]["sex"],
        }
        assert obj["attributes"]["race"] in RACES and obj["attributes"]["sex"] in SEXES
        features = obj["features"]
        assert set(features) == FEATURE_KEYS
        assert type(features["credit_score"]) is int and 300 <= features["credit_score"] <= 850
        assert type(features["income"]) is int and features["income"] > 0
        assert isinstance(features["zip_code"], str) and re.fullmatch(r"\d{5}", features["zip_code"])
        assert type(features["employment_history"]) is float and features["employment_history"] >= 0
        assert obj["label"] is None
    else:
        assert event.topic == OUTCOMES_TOPIC
        assert set(obj) == {"schema", "decision_id", "model", "ts", "label"}
        assert obj["schema"] == "outcome/v1" and obj["label"] in (0, 1)
    return obj


def frames(sim: LoanSimulator, seconds: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decisions and outcomes delivered in the next ``seconds``, decoded."""
    batch = sim.advance_batch(seconds)
    rows = [orjson.loads(v) for v in batch.topic_values(outcomes=False)]
    decisions = pd.DataFrame(
        {
            "decision_id": [r["decision_id"] for r in rows],
            "t": batch.times[~batch.is_outcome],  # == ts, checked by check_event
            "version": [r["model_version"] for r in rows],
            "race": [r["attributes"]["race"] for r in rows],
            "sex": [r["attributes"]["sex"] for r in rows],
            "score": [r["score"] for r in rows],
            "decision": [r["decision"] for r in rows],
        }
    )
    outs = [orjson.loads(v) for v in batch.topic_values(outcomes=True)]
    outcomes = pd.DataFrame(
        {
            "decision_id": [r["decision_id"] for r in outs],
            "t_outcome": batch.times[batch.is_outcome],
            "label": [r["label"] for r in outs],
        }
    )
    return decisions, outcomes


def labeled(sim: LoanSimulator, seconds: float) -> pd.DataFrame:
    decisions, outcomes = frames(sim, seconds)
    return decisions.merge(outcomes, on="decision_id", how="left")


def disparate_impact(df: pd.DataFrame, by: str = "race") -> pd.Series:
    rate = df.groupby(by).decision.mean()
    return rate / rate.max()


def ece(df: pd.DataFrame, bins: int = 10) -> float:
    """docs/metrics.md: sum over bins of |label sum - score sum| / N."""
    b = np.minimum(np.floor(df.score.to_numpy() * bins), bins - 1).astype(int)
    s = np.bincount(b, weights=df.score.to_numpy(), minlength=bins)
    y = np.bincount(b, weights=df.label.to_numpy(dtype=float), minlength=bins)
    return float(np.abs(y - s).sum() / len(df))


# --- determinism -----------------------------------------------------------------------
def test_same_seed_same_bytes_different_seed_differs():
    def stream(seed: int) -> list[SimEvent]:
        sim = LoanSimulator(seed=seed, rate=100.0, scenario="dp-drop", drift_at=20.0)
        return sim.advance(30.0) + sim.advance(30.0)

    a, b, c = stream(5), stream(5), stream(6)
    assert len(a) > 4000 and any(e.topic == OUTCOMES_TOPIC for e in a)
    assert a == b
    assert [e.value for e in a] != [e.value for e in c]


@pytest.mark.parametrize("delay", [OutcomeDelay(median_s=2.0), NOW_DELAY])
def test_step_size_does_not_change_the_stream(delay):
    one = LoanSimulator(seed=3, rate=300.0, delay=delay).advance(10.0)
    sim = LoanSimulator(seed=3, rate=300.0, delay=delay)
    ten = [e for _ in range(10) for e in sim.advance(1.0)]
    sim = LoanSimulator(seed=3, rate=300.0, delay=delay)
    odd = [e for step in (0.001, 0.0, 2.5, 0.499, 7.0) for e in sim.advance(step)]
    assert one == ten == odd
    assert sum(e.topic == OUTCOMES_TOPIC for e in one) > 500


def test_decisions_frame_is_seeded_and_leaves_the_stream_alone():
    plain = LoanSimulator(seed=9, rate=50.0)
    probed = LoanSimulator(seed=9, rate=50.0)
    frame = probed.decisions_frame(1000)
    assert plain.advance(20.0) == probed.advance(20.0)
    pd.testing.assert_frame_equal(frame, LoanSimulator(seed=9).decisions_frame(1000))
    assert len(frame) == 1000
    assert {"race", "sex", "credit_score", "income", "zip_code", "employment_history"} <= set(frame)
    assert {"p_repay", "score", "decision", "label", "model_version", "drifted"} <= set(frame)
    assert ((frame.score >= APPROVAL_THRESHOLD) == frame.decision.astype(bool)).all()


# --- wire format -----------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_event_is_valid_design_2(scenario):
    sim = LoanSimulator(seed=11, rate=200.0, scenario=scenario, drift_at=10.0, delay=OutcomeDelay(median_s=1.0))
    events = sim.advance(15.0) + sim.advance(5.0)
    decided: dict[str, float] = {}
    last = sim.start
    for event in events:
        obj = check_event(event)
        assert last <= event.time <= sim.now  # delivery order
        last = event.time
        if event.topic == DECISIONS_TOPIC:
            assert obj["decision_id"] not in decided  # unique
            decided[obj["decision_id"]] = event.time
        else:  # an outcome follows its own decision
            assert decided[obj["decision_id"]] <= event.time
    assert len(decided) > 3000


def test_decision_ids_are_seeded_and_distinct_across_seeds():
    ids = {orjson.loads(e.value)["decision_id"] for s in (1, 2) for e in LoanSimulator(seed=s).advance(5.0)}
    assert len(ids) == len(LoanSimulator(seed=1).advance(5.0)) + len(LoanSimulator(seed=2).advance(5.0))


def test_write_jsonl_matches_the_stream(tmp_path):
    dec, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    sim = LoanSimulator(seed=4, rate=100.0, delay=OutcomeDelay(median_s=1.0))
    n_dec, n_out = write_jsonl(sim, 30.0, dec, out, chunk_events=700)
    events = LoanSimulator(seed=4, rate=100.0, delay=OutcomeDelay(median_s=1.0)).advance(30.0)
    assert dec.read_bytes().splitlines() == [e.value for e in events if e.topic == DECISIONS_TOPIC]
    assert out.read_bytes().splitlines() == [e.value for e in events if e.topic == OUTCOMES_TOPIC]
    assert (n_dec, n_out) == (
        len(dec.read_bytes().splitlines()),
        len(out.read_bytes().splitlines()),
    )
    assert sim.now == pytest.approx(sim.start + 30.0)


# --- the world -------------------------------------------------------------------------
def test_group_shares_and_rate_within_binomial_tolerance():
    decisions, _ = frames(LoanSimulator(seed=21, rate=400.0), 150.0)
    n = len(decisions)
    assert abs(n - 60_000) < 5 * math.sqrt(60_000)  # Poisson count
    for race, p in zip(RACES, RACE_SHARES, strict=True):
        share = (decisions.race == race).mean()
        assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n), (race, share)
    assert abs((decisions.sex == "Female").mean() - 0.5) < 5 * math.sqrt(0.25 / n)


def test_baseline_is_fair_and_calibrated():
    df = labeled(LoanSimulator(seed=22, rate=400.0, delay=NOW_DELAY), 150.0)
    di = disparate_impact(df)
    assert di.min() >= 0.85 and di.max() == 1.0
    assert di["Black"] == pytest.approx(0.95, abs=0.04)
    assert disparate_impact(df, "sex").min() >= 0.9
    for race in RACES:
        assert ece(df[df.race == race]) < 0.05
    assert 0.6 < df.decision.mean() < 0.8
    assert (df.version == "v3").all()


def test_zip_code_is_a_race_proxy():
    frame = LoanSimulator(seed=23).decisions_frame(40_000)
    top = pd.crosstab(frame.zip_code, frame.race, normalize="index").max(axis=1)
    # residential clustering: most zip codes are dominated by one group
    assert top.mean() > 0.6
    assert frame.groupby("race", observed=True).zip_code.agg(lambda z: z.mode()[0]).nunique() == 4


# --- scenarios -------------------------------------------------------------------------
def test_dp_drop_is_a_step_at_drift_at():
    sim = LoanSimulator(seed=31, rate=300.0, scenario="dp-drop", drift_at=150.0)
    df, _ = frames(sim, 300.0)
    before = disparate_impact(df[df.t < sim.start + 150.0])
    after = disparate_impact(df[df.t >= sim.start + 150.0])
    assert before["Black"] == pytest.approx(0.95, abs=0.05)
    assert after["Black"] == pytest.approx(0.60, abs=0.05)
    assert after.drop("Black").min() >= 0.85


def test_rollback_to_baseline_removes_the_drift():
    sim = LoanSimulator(seed=32, rate=400.0, scenario="dp-drop", drift_at=0.0)
    drifted, _ = frames(sim, 100.0)
    sim.set_model_version("v2")
    assert sim.model_version == "v2"
    fixed, _ = frames(sim, 100.0)
    assert disparate_impact(drifted)["Black"] == pytest.approx(0.60, abs=0.05)
    assert (fixed.version == "v2").all() and (drifted.version == "v3").all()
    assert disparate_impact(fixed)["Black"] == pytest.approx(0.95, abs=0.05)
    sim.set_model_version("v3")  # and back: the candidate still has its bug
    again, _ = frames(sim, 100.0)
    assert disparate_impact(again)["Black"] == pytest.approx(0.60, abs=0.05)


def test_calibration_drift_shows_only_in_ece():
    sim = LoanSimulator(seed=33, rate=400.0, scenario="calibration-drift", drift_at=0.0, delay=NOW_DELAY)
    df = labeled(sim, 150.0)
    assert ece(df[df.race == "Black"]) > 0.08
    for race in ("White", "Hispanic", "Asian"):
        assert ece(df[df.race == race]) < 0.05
    assert disparate_impact(df)["Black"] == pytest.approx(0.95, abs=0.05)  # decisions unchanged


def test_label_shift_changes_the_base_rate_not_the_model():
    sim = LoanSimulator(seed=34, rate=400.0, scenario="label-shift", drift_at=100.0, delay=NOW_DELAY)
    df = labeled(sim, 200.0)
    early = df[df.t < sim.start + 100.0].groupby("race").label.mean()
    late = df[df.t >= sim.start + 100.0].groupby("race").label.mean()
    assert late["Black"] < early["Black"] - 0.1
    assert (late - early).drop("Black").abs().max() < 0.05
    assert disparate_impact(df[df.t >= sim.start + 100.0])["Black"] == pytest.approx(0.95, abs=0.05)


def test_small_group_noise_shrinks_the_group_without_bias():
    sim = LoanSimulator(seed=35, rate=400.0, scenario="small-group-noise", drift_at=0.0)
    df, _ = frames(sim, 150.0)
    n, share = len(df), (df.race == "Black").mean()
    assert abs(share - 0.01) < 5 * math.sqrt(0.01 * 0.99 / n)
    rest = df[df.race != "Black"].race.value_counts(normalize=True)
    expected = pd.Series(dict(zip(RACES, RACE_SHARES, strict=True))).drop("Black")
    assert (rest - expected / expected.sum()).abs().max() < 0.01
    frame = LoanSimulator(seed=35, scenario="small-group-noise", drift_at=0.0).decisions_frame(400_000)
    assert disparate_impact(frame)["Black"] == pytest.approx(0.95, abs=0.04)  # noisy, not unfair


def test_drift_group_is_configurable():
    sim = LoanSimulator(seed=36, rate=400.0, scenario="dp-drop", drift_at=0.0, drift_group=("sex", "Female"))
    df, _ = frames(sim, 100.0)
    assert disparate_impact(df, "sex")["Female"] == pytest.approx(0.60, abs=0.05)


# --- outcome delays --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lognormal", "exponential", "fixed"])
def test_outcome_delays_follow_the_configured_distribution(kind):
    delay = OutcomeDelay(kind=kind, median_s=5.0, sigma=0.5, never_share=0.1)
    sim = LoanSimulator(seed=41, rate=200.0, delay=delay)
    decisions, outcomes = frames(sim, 300.0)
    early = decisions[decisions.t < sim.start + 100.0]  # their outcomes are all due by now
    joined = early.merge(outcomes, on="decision_id", how="left")
    arrived = joined.t_outcome.notna()
    assert abs((~arrived).mean() - 0.1) < 5 * math.sqrt(0.09 / len(joined))
    waited = (joined.t_outcome - joined.t)[arrived]
    assert (waited >= 0).all()
    assert waited.median() == pytest.approx(5.0, rel=0.05)
    if kind == "fixed":
        assert (waited.round(3) == 5.0).all()
    if kind == "exponential":
        assert waited.mean() == pytest.approx(delay.mean_s, rel=0.05)


def test_delay_none_delivers_right_after_the_decision():
    events = LoanSimulator(seed=42, rate=2000.0, delay=NOW_DELAY).advance(5.0)
    position = {}
    for i, event in enumerate(events):
        decision_id = orjson.loads(event.value)["decision_id"]
        if event.topic == DECISIONS_TOPIC:
            position[decision_id] = (i, event.time)
        else:  # same millisecond, after its decision (ties: decisions first)
            j, decided = position.pop(decision_id)
            assert j < i and decided == event.time
    assert not position  # every outcome arrived
    assert any(a.time == b.time for a, b in itertools.pairwise(events))  # ties happen


@pytest.mark.parametrize("kind", DELAY_KINDS)
def test_delay_sampler_median_and_never_share(kind):
    delay = OutcomeDelay(kind=kind, median_s=60.0, never_share=0.05)
    ms = delay.sample_ms(np.random.default_rng(0), 200_000)
    arrives = ms[ms >= 0]
    assert abs((ms < 0).mean() - 0.05) < 0.003
    assert np.median(arrives) / 1000 == pytest.approx(0.0 if kind == "none" else 60.0, rel=0.02)


def test_in_flight_outcomes_are_bounded_by_the_delay():
    sim = LoanSimulator(seed=43, rate=100.0, delay=OutcomeDelay(kind="fixed", median_s=10.0, never_share=0.0))
    sim.advance(200.0)
    # in flight: ~10 s of decisions plus the block generated ahead of the clock
    assert sim.pending_outcomes < 10 * 100 * 1.5 + 16_384


# --- validation ------------------------------------------------------------------------
def test_unknown_scenario_names_field_value_and_choices():
    with pytest.raises(ValueError) as info:
        LoanSimulator(scenario="dp_drop")
    assert str(info.value) == MSG_CHOICE.format(field="scenario", choices=SCENARIOS, value="dp_drop")
    assert "'dp_drop'" in str(info.value) and "calibration-drift" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": 0.0}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"drift_at": -1.0}, "drift_at"),
        ({"small_group_share": 1.0}, "small_group_share"),
        ({"drift_group": ("race", "Martian")}, "drift_group"),
        ({"drift_group": ("age", "30")}, "drift_group"),
        ({"seed": -1}, "seed"),
        ({"candidate_version": "v2"}, "candidate_version"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        LoanSimulator(**kwargs)


def test_bad_delay_and_version_are_rejected():
    with pytest.raises(ValueError, match=r"^kind: must be one of .*got 'gamma'"):
        OutcomeDelay(kind="gamma")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^never_share: "):
        OutcomeDelay(never_share=1.5)
    with pytest.raises(ValueError, match="^median_s: "):
        OutcomeDelay(kind="lognormal", median_s=0.0)
    sim = LoanSimulator()
    with pytest.raises(ValueError, match=r"^version: must be one of \('v2', 'v3'\), got 'v4'$"):
        sim.set_model_version("v4")
    with pytest.raises(ValueError, match="^seconds: "):
        sim.advance(-1.0)
