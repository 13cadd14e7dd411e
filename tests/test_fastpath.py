"""The C fast path (``streaming/_fastpath.c``) on its own.

It may accept an event only if the per-event validator accepts it, with the same values
(the caller adds two checks of its own over the columns: the ``ts`` range, and the
attribute set through the registry); it must take the forms producers write (or the
speed it exists for is lost); and no bytes may make it read outside an event (checked
under AddressSanitizer, every object in its own allocation).

The batch decoders' equality with the validator on both paths (C first, and msgspec
alone) is tested in ``tests/test_events.py``, which runs every test there on each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import crc32c
import numpy as np
import orjson
import pytest
from fairwatch.streaming import batch
from fairwatch.streaming.schema import MAX_TS, MIN_TS, EventError, decision_fields, outcome_fields
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.infra.fixtures import in_ci, service_unavailable
from tests.test_events import GOOD, SPLICES, _spliced, json_values, rfc3339

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _native():
    if not batch.NATIVE:
        service_unavailable("the C fast path", "not built (no C compiler when fairwatch was installed?)")


def c_decision(raw: bytes) -> tuple | None:
    """The C path's reading of one decision: the validator's field order, attributes raw."""
    got = batch._fastpath.decisions([raw], *batch._LIMITS)
    if got is None:
        return None
    ids, models, versions, ts, score, decision, attrs, label, fingerprint = got
    return (
        ids[0],
        models[0],
        versions[0],
        np.frombuffer(ts, np.float64)[0].item(),
        np.frombuffer(score, np.float64)[0].item(),
        int(np.frombuffer(decision, np.int8)[0]),
        attrs[0],
        int(np.frombuffer(label, np.int8)[0]),
        int(np.frombuffer(fingerprint, np.uint32)[0]),
    )


def assert_subset(raw: bytes) -> bool:
    """If the C path reads ``raw``, the validator accepts it with the same values, or refuses it
    for what only the caller checks; returns whether the C path read it."""
    got = c_decision(raw)
    if got is None:
        return False
    try:
        want = decision_fields(raw)
    except EventError as exc:
        assert exc.reason in {"bad_timestamp", "bad_attributes", "bad_attribute_value"}, (raw, exc.reason)
        if exc.reason == "bad_timestamp":
            assert not MIN_TS <= got[3] < MAX_TS, (raw, got[3])
        else:
            assert batch.AttributeRegistry().learn_raw(got[6]) is None, raw
        return True
    assert got[:6] == want[:6], raw
    assert [type(v) for v in got[:3]] == [str, str, str]
    assert list(orjson.loads(got[6]).items()) == list(want[6].items()), raw
    assert got[7:] == want[7:], raw
    return True


def _dumps(event: dict, how: str) -> bytes:
    if how == "orjson":
        return orjson.dumps(event)
    if how == "json":  # Python's default: ", " and ": ", non-ASCII as \\u escapes
        return json.dumps(event).encode()
    if how == "json_utf8":
        return json.dumps(event, ensure_ascii=False).encode()
    return json.dumps(event, indent=2).encode()  # newlines and indentation between fields


names = st.sampled_from(["loan-approval", "v3", "", "m\x7f", "Zürich", 'a"b', "a\\b", "x" * 129]) | st.text(max_size=6)
events = st.fixed_dictionaries(
    {},
    optional={
        "schema": st.sampled_from(["decision/v1", "outcome/v1", "decision/v1 "]) | json_values,
        "decision_id": st.text(min_size=0, max_size=130) | st.sampled_from(["8f1c", "ü" * 128, "ü" * 129]),
        "model": names | json_values,
        "model_version": names,
        "ts": rfc3339() | st.floats(9e8, 4.2e9) | st.integers(9 * 10**8, 42 * 10**8) | json_values,
        "score": st.floats(-0.5, 1.5) | st.integers(-1, 2) | st.sampled_from([0.0, -0.0, 1, 1e-320]) | json_values,
        "decision": st.sampled_from([0, 1, 2, 1.0, True, -0]) | json_values,
        "attributes": st.dictionaries(st.sampled_from(["race", "sex", "", "a,b"]), st.none() | names, max_size=3)
        | json_values,
        "features": st.none() | json_values,
        "label": st.sampled_from([None, 0, 1, 2, True]) | json_values,
        "extra": json_values,
    },
)


@settings(max_examples=1500, deadline=None)
@given(events, st.sampled_from(["orjson", "json", "json_utf8", "indent"]))
def test_c_accepts_only_what_the_validator_accepts_with_its_values(event, how):
    assert_subset(_dumps(event, how))


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 3), st.sampled_from(SPLICES)), min_size=1, max_size=3))
def test_spliced_bytes_never_make_the_c_path_accept_what_the_validator_refuses(edits):
    assert_subset(_spliced(orjson.dumps({**GOOD, "extra": {"note": "x", "n": [1, 2.5e3, None]}}), edits))


def test_the_forms_producers_write_take_the_c_path():
    """What producers send in practice is read in C (else the speed it exists for is lost):
    Python's ``json.dumps`` (escapes, spaces), indented JSON, raw UTF-8 group names, every
    timestamp form of issue 16, epoch numbers, extra fields, labels given or not."""
    when = datetime(2026, 11, 21, 10, 15, 0, 123456, tzinfo=UTC)
    stamps = [
        when.isoformat(),  # +00:00
        when.replace(tzinfo=None).isoformat() + "Z",
        when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        when.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        when.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
        "2026-11-21t10:15:00.123456789z",
        "2026-11-21 10:15:00Z",
        when.timestamp(),
        int(when.timestamp()),
    ]
    variants = [
        {},
        {"attributes": {"sex": "Männlich", "race": None}},
        {"attributes": {"nationality": "Türkiye", "age_band": "25–34"}},
        {"features": {"note": "naïve café", "history": [[1, 2], {"a": None}], "x": -1.5e-7}},
        {"features": {"note": "approved 🚀"}, "attributes": {"sex": "F", "team": "🦊"}},  # json.dumps: \ud83d\ude80
        {"features": None},
        {"label": 0},
        {"label": 1},
        {"decision_id": "9b2e4c1e-5f0a-4a8e-9d57-3f7f6c1b2a10"},
        {"trace_id": "abc", "region": {"eu": True}},
    ]
    read = 0
    for ts in stamps:
        for extra in variants:
            event = {**GOOD, "ts": ts, **extra}
            if "label" not in extra:
                event.pop("label")
            for how in ("orjson", "json", "json_utf8", "indent"):
                raw = _dumps(event, how)
                assert assert_subset(raw), raw
                read += 1
    assert read == len(stamps) * len(variants) * 4


@pytest.mark.parametrize(
    "raw",
    [
        orjson.dumps({**GOOD, "model": "mod\\u00e8le"}).replace(b"\\\\", b"\\"),  # an escape in a name it reads
        orjson.dumps({**GOOD, "model": "modèle"}),  # a name that is not ASCII
        orjson.dumps(GOOD)[:-1] + b',"score":0.5}',  # a field twice (the validator takes the last)
        orjson.dumps({**GOOD, "features": {"e": "x"}}).replace(b'"x"', b'"\\ud83d"'),  # a lone surrogate
        orjson.dumps({**GOOD, "features": {"e": "x"}}).replace(b'"x"', b'"\\ude00\\ud83d"'),  # a pair reversed
        orjson.dumps({**GOOD, "features": {"deep": [[[[[[[[[[1]]]]]]]]]]}}).replace(b"[1]", b"[" * 70 + b"]" * 70),
        b"\xef\xbb\xbf" + orjson.dumps(GOOD),  # a byte-order mark
    ],
    ids=[
        "escaped_model",
        "non_ascii_model",
        "repeated_field",
        "lone_surrogate",
        "reversed_pair",
        "nesting_past_64",
        "bom",
    ],
)
def test_what_the_c_path_leaves_to_msgspec_and_the_validator(raw):
    """Forms the C path declines by design: the run goes on to msgspec (and the validator),
    which give the validator's verdict (tests/test_events.py); here only that C declines."""
    assert c_decision(raw) is None


def test_every_strict_prefix_of_an_event_is_refused():
    for base in (orjson.dumps(GOOD), json.dumps(GOOD, indent=1).encode()):
        assert c_decision(base) is not None
        for k in range(len(base)):
            assert c_decision(base[:k]) is None, base[:k]


def test_outcomes_equal_the_validator():
    base = {"schema": "outcome/v1", "decision_id": "8f1c", "model": "loan-approval", "ts": GOOD["ts"], "label": 1}
    for raw in (
        orjson.dumps(base),
        json.dumps({**base, "label": 0, "ts": 1795256100.5}, indent=2).encode(),
        orjson.dumps({**base, "reason": "repaid", "model_version": 3}),
    ):
        got = batch._fastpath.outcomes([raw], *batch._LIMITS)
        assert got is not None, raw
        ids, models, ts, label = got
        assert (ids[0], models[0], np.frombuffer(ts)[0].item(), int(np.frombuffer(label, np.int8)[0])) == (
            outcome_fields(raw)
        )
    for refused in ({**base, "label": None}, {k: v for k, v in base.items() if k != "label"}, {**base, "label": 2}):
        assert batch._fastpath.outcomes([orjson.dumps(refused)], *batch._LIMITS) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fingerprint_is_crc32c(data):
    assert batch._fastpath.crc32c(data) == crc32c.crc32c(data)


@settings(max_examples=1000, deadline=None)
@given(rfc3339() | st.text(alphabet="0123456789-T:.Z+ tz", min_size=19, max_size=36))
def test_stamps_equal_parse_timestamp(stamp):
    from fairwatch.streaming.schema import parse_timestamp

    got = batch._fastpath.stamp(stamp)
    try:
        want = parse_timestamp(stamp)
    except EventError:
        assert got is None or not MIN_TS <= got < MAX_TS, stamp
        return
    if got is not None:
        assert got == want, stamp


def test_ci_builds_the_c_path():
    """CI measures and tests the C path: an install that silently fell back to msgspec fails here."""
    if in_ci():
        assert batch.NATIVE


ASAN_PROBE = r"""
import json, random, sys
import orjson
from fairwatch.streaming import _fastpath as fp
from tests.test_events import GOOD, SPLICES
random.seed(int(sys.argv[1]))
bases = [orjson.dumps({**GOOD, "extra": {"n": [1, "x", None]}}), json.dumps(GOOD, indent=1).encode(),
         orjson.dumps({"schema": "outcome/v1", "decision_id": "d", "model": "m", "ts": 1795256100, "label": 0})]
n = 0
for base in bases:
    for k in range(len(base) + 1):
        fp.decisions([bytes(base[:k])], 65536, 128, 128); fp.outcomes([bytes(base[:k])], 65536, 128, 128)
        n += 1
    for _ in range(4000):
        raw = bytearray(base)
        for _ in range(random.randint(1, 3)):
            i = random.randrange(len(raw) + 1)
            raw[i:i + random.randint(0, 3)] = random.choice(SPLICES + [bytes([random.randrange(256)])])
        raw = bytes(raw[: random.randint(0, len(raw))] if random.random() < 0.3 else raw)
        fp.decisions([raw, bytes(base)], 65536, 128, 128); fp.outcomes([raw], 65536, 128, 128); fp.crc32c(raw)
        n += 1
print("probed", n)
"""


def test_no_input_reads_outside_its_bytes_under_address_sanitizer(tmp_path):
    """The extension rebuilt with AddressSanitizer, every Python object in its own ``malloc``
    (``PYTHONMALLOC=malloc``, so a read past an event's bytes lands in a red zone): every
    prefix of valid events and thousands of spliced ones; ASan aborts the process on any
    out-of-bounds read or write."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0]
    libasan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not libasan or not Path(libasan).exists():
        service_unavailable("AddressSanitizer", f"{cc} has no libasan.so")
    pkg = tmp_path / "fairwatch" / "streaming"
    pkg.mkdir(parents=True)
    so = pkg / ("_fastpath" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer",
         f"-I{sysconfig.get_paths()['include']}", str(ROOT / "streaming" / "_fastpath.c"), "-o", str(so)],
        check=True,
    )  # fmt: skip
    probe = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('fairwatch.streaming._fastpath', {str(so)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "import fairwatch.streaming; sys.modules['fairwatch.streaming._fastpath'] = mod\n"
        "fairwatch.streaming._fastpath = mod\n" + ASAN_PROBE
    )
    env = {
        **os.environ,
        "LD_PRELOAD": libasan,
        "PYTHONMALLOC": "malloc",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=99",
    }
    run = subprocess.run(
        [sys.executable, "-c", probe, "7"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "probed" in run.stdout and "AddressSanitizer" not in run.stderr
