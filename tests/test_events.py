"""Bad input: every rejection reason, random bytes, mutated events — counted, never raised."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson
import pytest
from fairwatch.monitor.engine import Engine, EngineSettings
from fairwatch.streaming.events import (
    REASONS,
    EventError,
    Rejection,
    decision_fields,
    decode_decision,
    decode_outcome,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st


@pytest.fixture(autouse=True, scope="module", params=["C", "msgspec"])
def fast_path(request):
    """Every test here runs on both fast paths: the C one (``streaming/_fastpath.c``, the default
    where the install could build it) and msgspec alone (an install without a C compiler, and
    every run the C path leaves to it). Module-scoped: hypothesis's tests may use it."""
    import fairwatch.streaming.batch as batch

    if request.param == "C":
        if not batch.NATIVE:
            from tests.infra.fixtures import service_unavailable

            service_unavailable("the C fast path", "not built (no C compiler at install time?)")
        yield "C"
        return
    saved, batch._fastpath = batch._fastpath, None
    try:
        yield "msgspec"
    finally:
        batch._fastpath = saved


GOOD = {
    "schema": "decision/v1",
    "decision_id": "8f1c",
    "model": "loan-approval",
    "model_version": "v3",
    "ts": "2026-11-21T10:15:00.123Z",
    "score": 0.73,
    "decision": 1,
    "attributes": {"race": "Black", "sex": "Female"},
    "features": {"credit_score": 640, "income": 52000},
    "label": None,
}
NOW = 1795256100.0


def mutate(**changes):
    d = dict(GOOD)
    for k, v in changes.items():
        if v is KeyError:
            d.pop(k)
        else:
            d[k] = v
    return orjson.dumps(d)


BAD_DECISIONS = [
    (b"x" * 70_000, "oversized", "event"),
    (b'{"schema": "decision/v1",', "malformed_json", "event"),
    (b"\xff\xfe\x00", "malformed_json", "event"),
    (b"[1, 2]", "not_an_object", "event"),
    (mutate(schema="decision/v2"), "unknown_schema", "schema"),
    (mutate(schema=KeyError), "missing_field:schema", "schema"),
    (mutate(score=KeyError), "missing_field:score", "score"),
    (mutate(decision_id=KeyError), "missing_field:decision_id", "decision_id"),
    (mutate(ts=KeyError), "missing_field:ts", "ts"),
    (mutate(attributes=KeyError), "missing_field:attributes", "attributes"),
    (mutate(decision_id=""), "bad_decision_id", "decision_id"),
    (mutate(decision_id="x" * 129), "bad_decision_id", "decision_id"),
    (mutate(decision_id=17), "bad_type:decision_id", "decision_id"),
    (mutate(model=""), "bad_model", "model"),
    (mutate(model_version=3), "bad_type:model_version", "model_version"),
    (mutate(score=1.5), "score_out_of_range", "score"),
    (mutate(score=-0.01), "score_out_of_range", "score"),
    (mutate(score="0.5"), "bad_type:score", "score"),
    (mutate(score=True), "bad_type:score", "score"),
    (mutate(score=KeyError)[:-1] + b',"score":NaN}', "non_finite_score", "score"),
    (mutate(score=KeyError)[:-1] + b',"score":-Infinity}', "non_finite_score", "score"),
    (mutate(score=KeyError)[:-1] + b',"score":1e999}', "non_finite_score", "score"),
    (mutate(decision=2), "bad_decision", "decision"),
    (mutate(decision=1.0), "bad_decision", "decision"),
    (mutate(decision=True), "bad_decision", "decision"),
    (mutate(label=2), "bad_label", "label"),
    (mutate(label="1"), "bad_label", "label"),
    (mutate(ts="yesterday"), "bad_timestamp", "ts"),
    (mutate(ts="2026-11-21T10:15:00"), "bad_timestamp", "ts"),
    (mutate(ts=1795256100123), "bad_timestamp", "ts"),
    (mutate(ts="1999-12-31T23:59:59Z"), "bad_timestamp", "ts"),
    (mutate(ts=[1]), "bad_timestamp", "ts"),
    (mutate(ts=NOW + 3600), "future_timestamp", "ts"),
    (mutate(attributes=["race"]), "bad_attributes", "attributes"),
    (mutate(attributes={"": "x"}), "bad_attributes", "attributes"),
    (mutate(attributes={"race": 5}), "bad_attribute_value", "attributes.race"),
    (mutate(attributes={"race": "__other__"}), "bad_attribute_value", "attributes.race"),
    (mutate(attributes={"race": "a,b"}), "bad_attribute_value", "attributes.race"),
    (mutate(features=[1, 2]), "bad_features", "features"),
    # a lone surrogate escape is JSON, but not Unicode text: no checkpoint or label could hold it
    (mutate(decision_id="@").replace(b"@", b"\\ud800x"), "bad_decision_id", "decision_id"),
    (mutate(model="@").replace(b"@", b"m\\udfff"), "bad_model", "model"),
    (mutate(model_version="@").replace(b"@", b"\\uDC00"), "bad_model", "model_version"),
    (mutate(attributes={"@": "x"}).replace(b"@", b"r\\ud83d"), "bad_attributes", "attributes"),
    (mutate(attributes={"race": "@"}).replace(b"@", b"\\ud83dBlack"), "bad_attribute_value", "attributes.race"),
    # control characters in what becomes a label and a PostgreSQL text column (NUL: impossible there)
    (mutate(model="loan\x00approval"), "bad_model", "model"),
    (mutate(model_version="v3\n"), "bad_model", "model_version"),
    (mutate(attributes={"ra\tce": "x"}), "bad_attributes", "attributes"),
    (mutate(attributes={"race": "Black\x7f"}), "bad_attribute_value", "attributes.race"),
]


@pytest.mark.parametrize(("raw", "reason", "field"), BAD_DECISIONS, ids=[r for _, r, _ in BAD_DECISIONS])
def test_every_reason_is_reported_with_the_field(raw, reason, field):
    got = decode_decision(raw, now=NOW)
    assert isinstance(got, Rejection)
    assert got.reason == reason
    assert got.message.startswith(field + ":")
    assert got.raw == raw
    assert reason.split(":")[0] in REASONS


def test_outcome_reasons():
    good = {"schema": "outcome/v1", "decision_id": "8f1c", "model": "m", "ts": 1795256100, "label": 1}
    assert decode_outcome(orjson.dumps(good)).label == 1
    assert decode_outcome(orjson.dumps({**good, "label": None})).reason == "bad_label"
    assert decode_outcome(orjson.dumps({**good, "schema": "decision/v1"})).reason == "unknown_schema"
    bad = dict(good)
    del bad["label"]
    assert decode_outcome(orjson.dumps(bad)).reason == "missing_field:label"
    lone = orjson.dumps({**good, "decision_id": "@"}).replace(b"@", b"\\ud800")
    assert decode_outcome(lone).reason == "bad_decision_id"
    from fairwatch.streaming.batch import decode_outcome_batch

    assert [e.reason for _, e in decode_outcome_batch([lone])[1]] == ["bad_decision_id"]
    nul = orjson.dumps({**good, "model": "m\x00"})
    assert decode_outcome(nul).reason == "bad_model"
    assert [e.reason for _, e in decode_outcome_batch([nul])[1]] == ["bad_model"]


def test_valid_event_forms():
    d = decode_decision(mutate(ts=1795256100, score=1, attributes={"race": None}, label=0))
    assert (d.ts, d.score, d.label, d.attributes) == (1795256100.0, 1.0, 0, {"race": None})
    d = decode_decision(mutate(ts="2026-11-21T12:15:00.123+02:00"))
    assert d.ts == 1795256100.123


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
timestamps = st.sampled_from(
    [
        "2026-11-21T10:15:00.123Z",
        "2026-11-21T10:15:00Z",
        "2026-11-21T10:15:00.12Z",
        "2026-11-21T10:15:00.1234Z",
        "2026-02-30T10:15:00.123Z",
        "2026-11-21T25:15:00.123Z",
        "2026-11-21 10:15:00.123Z",
        "2026-11-21T10:15:00.abcZ",
        "2026-11-21T10:15:00.123+00:00",
        "x" * 24,
        1795256100,
        1795256100.5,
        17952561001234,
        -5,
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "schema": st.sampled_from(["decision/v1", "outcome/v1"]) | json_values,
            "decision_id": st.text(min_size=0, max_size=130) | json_values,
            "model": st.sampled_from(["loan", ""]) | json_values,
            "model_version": st.sampled_from(["v3"]) | json_values,
            "ts": timestamps | json_values,
            "score": st.floats(-0.5, 1.5) | st.integers(-1, 2) | json_values,
            "decision": st.sampled_from([0, 1, 2, 1.0, True]) | json_values,
            "attributes": st.dictionaries(
                st.sampled_from(["race", "sex", "", "a,b"]),
                st.sampled_from(["Black", None, "", "__missing__", "x,y", 3]),
                max_size=3,
            )
            | json_values,
            "features": st.none()
            | st.dictionaries(st.text(max_size=3), st.integers(-(2**40), 2**40), max_size=2)
            | json_values,
            "label": st.sampled_from([None, 0, 1, 2, True]) | json_values,
        },
    )
)
def test_batch_fast_path_equals_full_validation(event):
    """The batch decoder's inline checks accept and reject exactly what full validation does,
    also on a second sight of the event (when its second and attribute set are cached)."""
    from fairwatch.streaming.events import decode_decision_batch

    raw = orjson.dumps(event)
    try:
        f = decision_fields(raw, now=NOW)
        expected = ("ok", f[:6] + (tuple(f[6].items()),) + f[7:])
    except EventError as exc:
        expected = ("bad", exc.reason)
    from fairwatch.streaming.batch import AttributeRegistry

    registry = AttributeRegistry()
    for _ in range(2):
        good, bad = decode_decision_batch([raw], now=NOW, registry=registry)
        got = ("ok", good.rows()[0]) if good.ids else ("bad", bad[0][1].reason)
        assert got == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200) | st.builds(lambda v: orjson.dumps(v), json_values), max_size=40))
def test_random_bytes_never_escape_and_every_event_is_counted(raws):
    eng = Engine(EngineSettings(windows=("1h",)))
    valid = [mutate(decision_id=f"ok{i}") for i in range(5)]
    rejected = eng.process(decisions=raws + valid + valid[:2], outcomes=raws)
    snap = eng.snapshot()
    counted = sum(s.value for s in snap.select("fairwatch_events_total"))
    assert counted == 2 * len(raws) + 7
    assert len(rejected) == sum(
        s.value for s in snap.select("fairwatch_events_total") if s.labels["result"] == "invalid"
    )
    assert snap.value("fairwatch_events_total", topic="fairness.decisions", result="ok") == 5
    assert snap.value("fairwatch_events_total", result="duplicate", reason="same") == 2
    for r in rejected:
        assert r.reason.split(":")[0] in REASONS


def test_duplicates_same_and_conflicting_and_late():
    eng = Engine(EngineSettings(windows=("1h",), allowed_lateness=60.0))
    a = mutate(decision_id="a", ts=NOW)
    eng.process(decisions=[a, a])
    eng.process(decisions=[mutate(decision_id="a", ts=NOW, score=0.1)])
    eng.process(decisions=[mutate(decision_id="late", ts=NOW - 3600 - 120)])
    eng.process(decisions=[mutate(decision_id="edge", ts=NOW - 3600 - 30)])
    snap = eng.snapshot()
    assert snap.value("fairwatch_events_total", result="duplicate", reason="same") == 1
    assert snap.value("fairwatch_events_total", result="duplicate", reason="conflicting") == 1
    assert snap.value("fairwatch_events_total", result="late", reason="too_old") == 1
    assert snap.value("fairness_decisions_total", attribute="race", group="Black", decision="1") == 2


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(BAD_DECISIONS).map(lambda t: t[0])
        | st.builds(
            lambda ts, score, race: mutate(ts=ts, score=score, attributes={"race": race}),
            timestamps,
            st.floats(-0.5, 1.5) | st.integers(-1, 2),
            st.sampled_from(["Black", None, "x,y", 3, ""]),
        ),
        max_size=30,
    )
)
def test_batch_decoder_equals_per_event_decoder(raws):
    from fairwatch.streaming.events import decode_decision_batch

    good, bad = decode_decision_batch(raws, now=NOW)
    expected_good, expected_bad = per_event(raws, decision_fields)
    assert good.rows() == expected_good
    assert [(j, e.reason) for j, e in bad] == expected_bad


def per_event(raws: list[bytes], validate) -> tuple[list[tuple], list[tuple[int, str]]]:
    """What the per-event validator ``validate`` (``decision_fields`` or ``outcome_fields``) makes
    of each event: the rows of the valid ones as the batch decoders give them (attributes as an
    item tuple), and ``(position, reason)`` of the others."""
    good, bad = [], []
    for j, raw in enumerate(raws):
        try:
            f = validate(raw, now=NOW)
        except EventError as exc:
            bad.append((j, exc.reason))
        else:
            good.append(f[:6] + (tuple(f[6].items()),) + f[7:] if validate is decision_fields else f)
    return good, bad


def test_engine_counts_every_reason_under_its_label():
    eng = Engine(EngineSettings(windows=("1h",)))
    rejected = eng.process(decisions=[raw for raw, _, _ in BAD_DECISIONS], now=NOW)
    assert [r.reason for r in rejected] == [reason for _, reason, _ in BAD_DECISIONS]
    snap = eng.snapshot()
    expected: dict[str, int] = {}
    for _, reason, _ in BAD_DECISIONS:
        expected[reason] = expected.get(reason, 0) + 1
    for reason, n in expected.items():
        assert snap.value("fairwatch_events_total", topic="fairness.decisions", result="invalid", reason=reason) == n
    assert snap.value("fairwatch_events_total", result="ok") is None


def _expected(raws):
    good, bad = [], []
    for j, raw in enumerate(raws):
        try:
            f = decision_fields(raw, now=NOW)
        except EventError as exc:
            bad.append((j, exc.reason))
        else:
            good.append(f[:6] + (tuple(f[6].items()),) + f[7:])
    return good, bad


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 3000),
    st.lists(st.tuples(st.integers(0, 2999), st.sampled_from(BAD_DECISIONS).map(lambda t: t[0])), max_size=6),
    st.lists(st.tuples(st.integers(0, 2999), st.sampled_from(["Asian", None, "Zz", "x,y"])), max_size=6),
    st.integers(0, 2**31),
)
def test_batch_decoder_over_many_runs_equals_per_event_decoder(n, bad_at, race_at, seed):
    """Batches longer than a run (1,024) with problems anywhere: the run holding a problem
    is split down to per-event validation, every other run stays on the column path,
    and the result is still exactly the per-event decoder's, in arrival order."""
    import random

    from fairwatch.streaming.events import decode_decision_batch

    rnd = random.Random(seed)
    raws = [
        mutate(
            decision_id=f"d{j}",
            ts=f"2026-11-21T10:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}.{rnd.randrange(1000):03d}Z",
            score=rnd.random(),
            decision=rnd.randrange(2),
            label=rnd.choice([None, 0, 1]),
        )
        for j in range(n)
    ]
    for j, raw in bad_at:
        if j < n:
            raws[j] = raw
    for j, race in race_at:
        if j < n:
            raws[j] = mutate(decision_id=f"r{j}", attributes={"race": race, "sex": "Female"})
    good, bad = decode_decision_batch(raws, now=NOW)
    expected_good, expected_bad = _expected(raws)
    assert good.rows() == expected_good
    assert [(j, e.reason) for j, e in bad] == expected_bad


def test_clean_runs_take_the_column_path():
    """A clean run is decoded without per-event validation (the reason it is fast)."""
    from unittest import mock

    import fairwatch.streaming.batch as ev

    raws = [mutate(decision_id=f"d{j}", ts=f"2026-11-21T10:00:{j % 60:02d}.{j % 1000:03d}Z") for j in range(3000)]
    with mock.patch.object(ev, "decision_fields", side_effect=AssertionError("per-event path taken")):
        good, bad = ev.decode_decision_batch(raws, now=NOW)
    assert len(good) == 3000 and not bad


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.datetimes(min_value=datetime(1999, 12, 31), max_value=datetime(2100, 1, 2)).map(
            lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
        ),
        st.text(alphabet="0123456789-T:.Z ", min_size=24, max_size=24),
        st.from_regex(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z"),
        st.text(max_size=30),
    )
)
def test_fast_path_timestamps_equal_parse_timestamp(stamp):
    """The fast path's ``ts`` reading (msgspec, ``stamps_column``) accepts a subset of what
    ``parse_timestamp`` accepts, and on it gives exactly the same float; it accepts every valid
    millisecond ``Z`` stamp."""
    from fairwatch.streaming.events import parse_timestamp, stamps_column

    got = stamps_column([stamp])
    try:
        want = parse_timestamp(stamp)
    except EventError:
        assert got is None
        return
    if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp, re.ASCII):
        assert got is not None and got.tolist() == [want]
    elif got is not None:
        assert got.tolist() == [want]


def test_models_interleaved_in_one_batch_equal_each_model_alone():
    """A batch mixing models is split per model (columns taken by position): the same
    metrics as feeding each model's events separately."""
    from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay

    sim = LoanSimulator(seed=1, rate=20, scenario="none", delay=OutcomeDelay(kind="none", never_share=1.0))
    a = sim.advance_batch(600).topic_values(False)
    b = [
        v.replace(b'"model":"loan-approval"', b'"model":"other"').replace(b'"decision_id":"', b'"decision_id":"o')
        for v in a
    ]
    mixed = [x for pair in zip(a, b, strict=True) for x in pair]
    together, apart = Engine(EngineSettings(windows=("1h",))), Engine(EngineSettings(windows=("1h",)))
    together.process(decisions=mixed)
    apart.process(decisions=a)
    apart.process(decisions=b)

    def samples(e):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in e.snapshot().samples}

    got = samples(together)
    assert got == samples(apart)
    assert got[
        ("fairwatch_events_total", (("reason", ""), ("result", "ok"), ("topic", "fairness.decisions")))
    ] == 2 * len(a)


def test_two_engines_keep_their_own_attribute_registries():
    """Attribute-set ids belong to one engine: another engine in the same process, learning
    other sets in another order (and resetting its registry when full), changes nothing here."""
    a, b = Engine(EngineSettings(windows=("1h",))), Engine(EngineSettings(windows=("1h",)))
    b.attribute_sets.limit = 1  # b forgets its sets before every batch
    a.process(decisions=[mutate(decision_id="a1", attributes={"race": "Asian"})])
    b.process(decisions=[mutate(decision_id="b1", attributes={"race": "White", "sex": "Male"})])
    b.process(decisions=[mutate(decision_id="b2", attributes={"race": "Black"})])
    a.process(decisions=[mutate(decision_id="a2", attributes={"race": "Asian"})])
    assert a.attribute_sets is not b.attribute_sets
    assert len(a.attribute_sets) == 1 and a.attribute_sets.key(0) == (("race", "Asian"),)
    assert a.attribute_sets.generation == 0 and b.attribute_sets.generation == 1
    sa, sb = a.snapshot(), b.snapshot()
    assert sa.value("fairness_decisions_total", attribute="race", group="Asian", decision="1") == 2
    assert sa.value("fairness_decisions_total", attribute="race", group="White", decision="1") is None
    assert sb.value("fairness_decisions_total", attribute="race", group="White", decision="1") == 1
    assert sb.value("fairness_decisions_total", attribute="race", group="Black", decision="1") == 1
    assert sb.value("fairness_decisions_total", attribute="race", group="Asian", decision="1") is None


@st.composite
def rfc3339(draw):
    """Every RFC 3339 form producers emit: 0-9 fraction digits, Z/z or an offset, T/t/space."""
    from datetime import timedelta

    when = draw(st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)))
    offset = draw(st.sampled_from([None, 0, 60, -300, 330, -(23 * 60 + 59), 23 * 60 + 59]) | st.integers(-1439, 1439))
    digits = draw(st.integers(0, 9))
    extra = draw(st.text(alphabet="0123456789", min_size=max(0, digits - 6), max_size=max(0, digits - 6)))
    local = when if offset is None else when + timedelta(minutes=offset)
    text = local.strftime("%Y-%m-%d") + draw(st.sampled_from("Tt ")) + local.strftime("%H:%M:%S")
    if digits:
        text += "." + (f"{local.microsecond:06d}" + extra)[:digits]
    if offset is None:
        return text + draw(st.sampled_from("Zz"))
    sign = "-" if offset < 0 or (offset == 0 and draw(st.booleans())) else "+"
    return text + f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"


@settings(max_examples=500, deadline=None)
@given(rfc3339())
def test_every_rfc3339_form_takes_the_fast_path(stamp):
    """Each generated form (0-9 fraction digits, nanoseconds rounded half up) is read by the fast
    path (``stamps_column``) to exactly ``parse_timestamp``'s value."""
    from fairwatch.streaming.events import parse_timestamp, stamps_column

    got = stamps_column([stamp])
    assert got is not None, stamp
    assert got.tolist() == [parse_timestamp(stamp)]


def _broken(stamp: str, at: int, char: str) -> str:
    return stamp[:at] + char + stamp[at + 1 :]


stamp_values = (
    rfc3339()
    | st.builds(_broken, rfc3339(), st.integers(0, 34), st.sampled_from("x9:-+.Z T0 "))
    | st.floats(9e8, 4.2e9)
    | st.integers(9 * 10**8, 42 * 10**8)
    | st.sampled_from(["2026-11-21T10:15:00.Z", "2026-11-21T10:15:00+0200", "2026-11-21T24:00:00Z", 1795256100123])
)


def _assert_batch_equals_per_event(raws):
    """The batch decoder (no clock) gives exactly the per-event validator's accepted rows and
    rejections (position, reason, message), in order."""
    from fairwatch.streaming.batch import AttributeRegistry, decode_decision_batch

    good, bad = decode_decision_batch(raws, now=None, registry=AttributeRegistry())
    expected_good, expected_bad = [], []
    for j, raw in enumerate(raws):
        try:
            f = decision_fields(raw)
        except EventError as exc:
            expected_bad.append((j, exc.reason, str(exc)))
        else:
            expected_good.append(f[:6] + (tuple(f[6].items()),) + f[7:])
    assert good.rows() == expected_good
    assert [(j, e.reason, str(e)) for j, e in bad] == expected_bad


@settings(max_examples=300, deadline=None)
@given(st.lists(stamp_values, min_size=1, max_size=80), st.integers(0, 2**31))
def test_batch_and_per_event_agree_on_every_timestamp_form(stamps, seed):
    """For generated stamps of every form (valid and broken, text and epoch seconds, mixed in
    one batch): the batch decoder and the per-event validator agree on accept/reject, the
    reason and the parsed value."""
    raws = [mutate(decision_id=f"d{j}", ts=s) for j, s in enumerate(stamps)]
    _assert_batch_equals_per_event(raws)


@pytest.mark.parametrize(
    "form",
    [
        lambda j: f"2026-11-21T10:00:{j % 60:02d}.{j % 1000:03d}Z",
        lambda j: datetime.fromtimestamp(NOW - j * 0.001001, tz=UTC).replace(tzinfo=None).isoformat() + "Z",
        lambda j: datetime.fromtimestamp(NOW - j * 0.001001, tz=UTC).isoformat(),
        lambda j: f"2026-11-21t12:00:{j % 60:02d}.{j:09d}+02:00",
        lambda j: f"2026-11-21T10:00:{j % 60:02d}z",
        lambda j: NOW - j * 0.5,
        lambda j: int(NOW) - j,
    ],
    ids=["ms_Z", "isoformat_us_Z", "isoformat_+00:00", "ns_offset_t", "no_fraction_z", "epoch_float", "epoch_int"],
)
def test_every_form_takes_the_column_path(form):
    """A clean run of any form is decoded without per-event validation: only invalid
    values take the slow path."""
    from unittest import mock

    import fairwatch.streaming.batch as batch

    raws = [mutate(decision_id=f"d{j}", ts=form(j)) for j in range(3000)]
    with mock.patch.object(batch, "decision_fields", side_effect=AssertionError("per-event path taken")):
        good, bad = batch.decode_decision_batch(raws, now=NOW)
    assert len(good) == 3000 and not bad


outcome_events = st.fixed_dictionaries(
    {},
    optional={
        "schema": st.sampled_from(["outcome/v1", "decision/v1"]) | json_values,
        "decision_id": st.text(min_size=0, max_size=130) | json_values,
        "model": st.sampled_from(["loan", ""]) | json_values,
        "ts": stamp_values | json_values,
        "label": st.sampled_from([None, 0, 1, 2, True, 1.0]) | json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(outcome_events.map(orjson.dumps) | st.binary(max_size=40), max_size=60))
def test_outcome_batch_equals_per_event_validation(raws):
    """The outcome fast path: the same outcomes, values, reasons and messages as outcome_fields."""
    from fairwatch.streaming.batch import decode_outcome_batch
    from fairwatch.streaming.events import outcome_fields

    good, bad = decode_outcome_batch(raws)
    expected_good, expected_bad = [], []
    for j, raw in enumerate(raws):
        try:
            expected_good.append(outcome_fields(raw))
        except EventError as exc:
            expected_bad.append((j, exc.reason, str(exc)))
    assert good.rows() == expected_good
    assert [(j, e.reason, str(e)) for j, e in bad] == expected_bad


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "decoder-process"])
def test_replay_decodes_each_outcome_once(tmp_path, parallel):
    """Replay reads an outcome line once, for its time and its fields (no second parse): here,
    or in an outcome decoder process (then this process parses none)."""
    from unittest import mock

    import fairwatch.monitor.replay as replay_mod
    from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay

    sim = LoanSimulator(
        seed=3, rate=50, scenario="none", delay=OutcomeDelay(kind="fixed", median_s=5.0, never_share=0.0)
    )
    batch = sim.advance_batch(200)
    dec, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    dec.write_bytes(b"\n".join(batch.topic_values(False)) + b"\n")
    outcomes = batch.topic_values(True)
    out.write_bytes(b"\n".join([*outcomes, b'{"schema":"outcome/v1"}']) + b"\n")
    seen = []

    def counting(lines, **kw):
        seen.extend(lines)
        return decode(lines, **kw)

    decode = replay_mod.decode_outcome_batch
    with (
        mock.patch.object(replay_mod, "decode_outcome_batch", counting),
        mock.patch("fairwatch.monitor.ingest.decode_outcome_batch", side_effect=AssertionError("parsed again")),
    ):
        result = replay_mod.replay(dec, outcomes=out, batch_size=1000, progress=False, parallel=parallel)
    assert len(seen) == (0 if parallel else len(outcomes) + 1)
    assert result.outcomes_read == len(outcomes) + 1
    assert result.rejected == 1
    joined = result.snapshot.value("fairwatch_outcome_joins_total", model="loan-approval", result="joined")
    ok = result.snapshot.value("fairwatch_events_total", topic="fairness.outcomes", result="ok")
    assert ok == len(outcomes) and joined == len(outcomes)


def _read_jsonl_batches_by_line(path, batch_size):
    """The line-by-line reader the chunked one replaced: the oracle for it."""
    lines, meta, done = [], [], 0
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            done += len(line)
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            lines.append(line)
            meta.append((0, lineno))
            if len(lines) >= batch_size:
                yield lines, meta, done
                lines, meta = [], []
    if lines:
        yield lines, meta, done


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"{}", b'{"a":1}', b"", b" ", b"\r", b"\r\r", b" x ", b"\t"]), max_size=40).map(
        b"\n".join
    )
    | st.binary(max_size=200),
    st.integers(1, 7),
    st.integers(1, 64),
)
def test_chunked_jsonl_reader_equals_line_by_line(tmp_path_factory, data, batch_size, chunk_bytes):
    """Same lines, line numbers, skipped blanks and bytes-read marks, whatever the chunking
    (for JSON lines: a file that is one JSON array, or compressed, is read as such instead)."""
    import msgspec
    from fairwatch.streaming.files import read_jsonl_batches

    assume(not data.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")))
    if data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"[":
        try:
            msgspec.json.decode(data.lstrip(b"\xef\xbb\xbf"), type=list[msgspec.Raw])
            assume(False)
        except msgspec.DecodeError:
            pass  # not an array: JSON lines after all
    path = tmp_path_factory.mktemp("jsonl") / "f.jsonl"
    path.write_bytes(data)
    got = list(read_jsonl_batches(path, batch_size, chunk_bytes=chunk_bytes))
    assert got == list(_read_jsonl_batches_by_line(path, batch_size))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2599), stamp_values), max_size=8), st.integers(0, 2**31))
def test_stamps_of_every_form_over_many_runs_equal_per_event(special, seed):
    """A batch of several runs (1,024 events each) of isoformat() stamps (mixed lengths) with
    generated stamps of every form, valid or broken, at any position: the result is exactly
    the per-event validator's (accept/reject, reason, message, value, order)."""
    import random

    rnd = random.Random(seed)
    stamps: list = [
        datetime.fromtimestamp(1.79e9 + rnd.randrange(10**9) / 1000, tz=UTC).isoformat() for _ in range(2600)
    ]  # µs and no-fraction lengths mixed, as isoformat() writes them
    for j, s in special:
        stamps[j] = s
    raws = [mutate(decision_id=f"d{j}", ts=s) for j, s in enumerate(stamps)]
    _assert_batch_equals_per_event(raws)


def _replay_file(tmp_path):
    """Decisions of two models with many attribute sets, rejected and repeated lines, and outcomes
    (rejected and repeated ones among them)."""
    from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay

    lines, outs = [], []
    delay = OutcomeDelay(kind="fixed", median_s=5.0)
    sims = [LoanSimulator(seed=s, rate=30, model=m, delay=delay) for s, m in ((3, "loan-approval"), (4, "card-limit"))]
    for k in range(20):  # both models, 10 s at a time: the files stay in time order within 10 s
        for sim in sims:
            b = sim.advance_batch(10.0)
            for j, raw in enumerate(b.topic_values(False)):
                ev = orjson.loads(raw)
                ev["attributes"]["region"] = f"r{(k * 5 + j) % 17}"
                lines.append(orjson.dumps(ev))
            lines += [b'{"schema": "decision/v1", "ts": 1}', lines[-2], b"{not json"]
            outs += b.topic_values(True)
            outs += [b'{"schema": "outcome/v1", "ts": 1}', *outs[-1:]]  # rejected, and a repeat
    dec, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    dec.write_bytes(b"\n".join(lines) + b"\n")
    out.write_bytes(b"\n".join(outs) + b"\n")
    return dec, out


def test_replay_with_a_decoder_process_equals_replay_in_one_process(tmp_path, monkeypatch):
    """Decisions and outcomes read and decoded by child processes give the same snapshot, counts
    and dead letters as decoding them in the replay's own process, also when the attribute-set
    registries (the child's and the engine's) fill up and reset between batches."""
    import fairwatch.monitor.engine as engine_mod
    from fairwatch.monitor.replay import replay
    from fairwatch.streaming.batch import AttributeRegistry

    dec, out = _replay_file(tmp_path)
    monkeypatch.setattr(engine_mod, "AttributeRegistry", lambda: AttributeRegistry(limit=6))
    settings = EngineSettings(windows=("1h", "24h"), attributes=("race", "sex", "region"))
    results = {}
    for parallel in (False, True):
        r = replay(
            dec,
            outcomes=out,
            settings=settings,
            dead_letter=tmp_path / f"dl{parallel}.jsonl",
            batch_size=97,
            progress=False,
            parallel=parallel,
        )
        samples = sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in r.snapshot.samples)
        dead = [orjson.loads(x)["reason"] for x in (tmp_path / f"dl{parallel}.jsonl").read_bytes().splitlines()]
        results[parallel] = (samples, r.decisions_read, r.outcomes_read, r.rejected, dead)
    assert results[True] == results[False]
    samples, n_dec, _, rejected, dead = results[True]
    assert rejected == 120 and len(dead) == 120 and n_dec > 12_000
    assert any(name == "fairness_decisions_total" and ("attribute", "region") in lab for name, lab, _ in samples)


def test_a_decoder_process_error_reaches_the_replay(tmp_path, monkeypatch):
    """An error in the decoder process is raised by the replay (not a hang, not a silent stop)."""
    import fairwatch.monitor.decoder as decoder_mod
    from fairwatch.monitor.replay import replay

    dec, out = _replay_file(tmp_path)

    def broken(path, batch_size):
        yield from ()
        raise PermissionError(f"{path}: permission denied")

    monkeypatch.setattr(decoder_mod, "read_jsonl_batches", broken)
    with pytest.raises(PermissionError, match="permission denied"):
        replay(dec, outcomes=out, progress=False, parallel=True)


def test_nanosecond_stamps_round_to_the_microsecond_on_both_paths():
    """Fraction digits past the sixth round the microseconds half up (msgspec's rule, which
    ``parse_timestamp`` follows): carries into the next second, day and year, and across the
    2000 and 2100 bounds, equal on the fast path and the per-event validator."""
    from fairwatch.streaming.events import parse_timestamp, stamps_column

    cases = {
        "2026-11-21T10:15:00.1234565Z": 1795256100.123457,
        "2026-11-21T10:15:00.1234564999Z": 1795256100.123456,
        "2026-11-21T10:15:00.123456500+00:00": 1795256100.123457,
        "2026-12-31T23:59:59.9999995Z": parse_timestamp("2027-01-01T00:00:00Z"),
        "1999-12-31T23:59:59.99999951Z": parse_timestamp("2000-01-01T00:00:00Z"),
    }
    for stamp, want in cases.items():
        assert parse_timestamp(stamp) == want, stamp
        assert stamps_column([stamp]).tolist() == [want], stamp
    late = "2099-12-31T23:59:59.9999995Z"  # rounds to 2100-01-01: outside the range on both
    with pytest.raises(EventError, match="outside"):
        parse_timestamp(late)
    assert stamps_column([late]) is None
    _assert_batch_equals_per_event([mutate(decision_id=f"n{j}", ts=s) for j, s in enumerate([*cases, late])])


#: byte strings that JSON producers (and broken ones) put where a parser may only skip:
#: bytes that are not UTF-8, escapes of control characters and surrogates, nesting past a parser's
#: depth, numbers past ``int``'s digit limit
SPLICES = [
    b"\\u0000",
    b"\\n",
    b"\x7f",
    b"\\u00a0",
    b"\\u2028",
    b"\xff",
    b"\xc3",
    b"\xe9",
    b"\xc3\xa9",
    b"\xed\xa0\x80",
    b"\xe2\x82",
    b"\xf4\x90\x80\x80",
    b"\x00",
    b"\\ud800",
    b'"',
    b"\\",
    b"[" * 1100,
    b"[" * 3000 + b"]" * 3000,
    b"9" * 4400,
    b"1e999",
    b"NaN",
    b",",
    b":",
    b"{",
    b"}",
    b" ",
]


def _spliced(raw: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(raw)
    for at, cut, piece in edits:
        i = at % (len(out) + 1)
        out[i : i + cut] = piece
    return bytes(out)


_edits = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 3), st.sampled_from(SPLICES)), min_size=1, max_size=3)


@settings(max_examples=600, deadline=None)
@given(st.lists(_edits, min_size=1, max_size=12), st.integers(0, 11))
def test_spliced_bytes_get_the_validators_verdict_on_both_fast_paths(edits, clean_at):
    """Bytes spliced into valid decisions and outcomes — above all into the parts the fast path
    skips instead of reading (``features``, unknown fields): the batch decoders accept, value and
    refuse each event as the per-event validator does, in a run with clean events, and never raise.
    (Latin-1 bytes inside ``features`` were once counted valid; a nesting 3,000 deep raised
    ``RecursionError`` out of the engine.)"""
    from fairwatch.streaming.batch import AttributeRegistry, decode_decision_batch, decode_outcome_batch
    from fairwatch.streaming.events import outcome_fields

    decision = orjson.dumps({**GOOD, "extra": {"note": "x"}})
    outcome = orjson.dumps({"schema": "outcome/v1", "decision_id": "8f1c", "model": "m", "ts": GOOD["ts"], "label": 1})
    for base, fast, slow in (
        (decision, decode_decision_batch, decision_fields),
        (outcome, decode_outcome_batch, outcome_fields),
    ):
        raws = [_spliced(base, e) for e in edits]
        raws.insert(clean_at % (len(raws) + 1), base)
        expected_good, expected_bad = per_event(raws, slow)
        kw = {"registry": AttributeRegistry()} if fast is decode_decision_batch else {}
        good, bad = fast(raws, now=NOW, **kw)
        assert good.rows() == expected_good
        assert [(j, e.reason) for j, e in bad] == expected_bad
        names = [*good.models, *(good.versions if slow is decision_fields else ())]
        orjson.dumps([*good.ids, *names])  # what was accepted is text a checkpoint can write
        assert not re.search("[\x00-\x1f\x7f]", "".join(names))  # and a label or a PostgreSQL column can hold
