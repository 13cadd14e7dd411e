"""Event schema (docs/events.md) and per-event validation: bytes → one decision/outcome record.

Every rejection carries a stable machine-readable ``reason`` (used as the
``reason`` label of ``fairwatch_events_total`` and in dead letters) and a
human message naming the field and showing the bad value.

>>> raw = (b'{"schema":"decision/v1","decision_id":"d1","model":"loan","model_version":"v3",'
...        b'"ts":"2026-11-21T10:15:00.123Z","score":0.73,"decision":1,'
...        b'"attributes":{"race":"Black","sex":"Female"}}')
>>> d = decode_decision(raw)
>>> d.decision_id, d.ts, d.score, d.decision, d.label, d.attributes["race"]
('d1', 1795256100.123, 0.73, 1, -1, 'Black')
>>> decode_decision(b'{"schema":"decision/v1"}').reason
'missing_field:decision_id'
>>> decode_decision(raw.replace(b"0.73", b"1.5")).message
'score: must be in [0, 1], got 1.5'
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from crc32c import crc32c as _fingerprint

from fairwatch.errors import FairwatchError

__all__ = [
    "DECISION_SCHEMA",
    "OUTCOME_SCHEMA",
    "MAX_EVENT_BYTES",
    "MIN_TS",
    "MAX_TS",
    "RESERVED_GROUPS",
    "MISSING_GROUP",
    "OTHER_GROUP",
    "Decision",
    "Outcome",
    "Rejection",
    "EventError",
    "decode_decision",
    "decode_outcome",
    "decision_fields",
    "outcome_fields",
    "validate_decision",
    "validate_outcome",
    "parse_timestamp",
    "REASONS",
]

DECISION_SCHEMA = "decision/v1"
OUTCOME_SCHEMA = "outcome/v1"
#: Larger messages are rejected before parsing (reason ``oversized``).
MAX_EVENT_BYTES = 64 * 1024
MAX_ID_CHARS = 128
MAX_NAME_CHARS = 128
MAX_ATTRIBUTES = 32
#: Plausible event-time range (docs/events.md, "Invalid events"): epoch milliseconds sent as seconds land outside.
MIN_TS = 946684800.0  # 2000-01-01T00:00:00Z
MAX_TS = 4102444800.0  # 2100-01-01T00:00:00Z
MISSING_GROUP = "__missing__"
OTHER_GROUP = "__other__"
RESERVED_GROUPS = frozenset({MISSING_GROUP, OTHER_GROUP})

#: Every reason an event can be rejected for; ``missing_field:*`` and ``bad_type:*``
#: carry the field name after the colon.
REASONS = (
    "oversized",
    "malformed_json",
    "not_an_object",
    "unknown_schema",
    "missing_field",
    "bad_type",
    "bad_decision_id",
    "bad_model",
    "score_out_of_range",
    "non_finite_score",
    "bad_decision",
    "bad_label",
    "bad_timestamp",
    "future_timestamp",
    "bad_attributes",
    "bad_attribute_value",
    "bad_features",
)

# Messages are constants so tests and dashboards can rely on them.
MSG_OVERSIZED = "event: {size} bytes exceeds the limit of {limit} bytes"
MSG_MALFORMED = "event: not valid JSON ({error})"
MSG_NOT_OBJECT = "event: must be a JSON object, got {kind}"
MSG_SCHEMA = "schema: expected {expected!r}, got {value!r}"
MSG_MISSING = "{field}: required field is missing"
MSG_TYPE = "{field}: must be {expected}, got {value!r}"
MSG_ID = "decision_id: must be 1..128 characters, got {value!r}"
#: a lone UTF-16 surrogate (JSON's ``\\ud800``): valid JSON syntax, but no Unicode text, so no
#: checkpoint, metric label or log line could hold it
MSG_SURROGATE = "{field}: must be Unicode text, without a lone surrogate escape such as \\ud800, got {value!r}"
MSG_MODEL = "{field}: must be 1..128 characters, got {value!r}"
#: names become metric labels, PostgreSQL text (which cannot hold NUL) and report headings
MSG_CONTROL = "{field}: must not contain control characters (U+0000 to U+001F, U+007F), got {value!r}"
MSG_SCORE_RANGE = "score: must be in [0, 1], got {value!r}"
MSG_SCORE_FINITE = "score: must be finite, got {value!r}"
MSG_DECISION = "decision: must be 0 or 1, got {value!r}"
MSG_LABEL = "label: must be 0, 1 or null, got {value!r}"
MSG_TS = "ts: {why}, got {value!r}"
#: the fraction of the seconds: its seventh digit rounds the microseconds (half up), as msgspec,
#: the batch fast path's parser, does (``fromisoformat`` alone would truncate)
_FRACTION = re.compile(r"[.,](\d+)", re.ASCII)
_ONE_US = timedelta(microseconds=1)
MSG_FUTURE = "ts: {ahead:.0f} s ahead of the source clock (limit {limit:.0f} s), got {value!r}"
MSG_ATTRS = "attributes: {why}, got {value!r}"
MSG_ATTR_VALUE = "attributes.{name}: {why}, got {value!r}"
MSG_FEATURES = "features: must be a JSON object or null, got {value!r}"


class EventError(FairwatchError, ValueError):
    """A rejected event: ``reason`` is stable and machine-readable, ``str()`` is for people."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that failed validation, kept whole for the dead-letter sink."""

    reason: str
    message: str
    raw: bytes
    topic: str = ""
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A validated ``decision/v1`` event. ``label`` is -1 when absent (null)."""

    decision_id: str
    model: str
    model_version: str
    ts: float
    score: float
    decision: int
    attributes: dict[str, str | None]
    label: int
    fingerprint: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """A validated ``outcome/v1`` event."""

    decision_id: str
    model: str
    ts: float
    label: int


def _short(value: Any, limit: int = 80) -> Any:
    """Keep error messages readable when a field holds something huge."""
    if isinstance(value, str | bytes) and len(value) > limit:
        return value[:limit] + ("…" if isinstance(value, str) else b"...")
    if isinstance(value, dict | list) and len(repr(value)) > limit:
        return f"<{type(value).__name__} of {len(value)} items>"
    return value


def parse_timestamp(value: Any, *, now: float | None = None, max_future_skew: float = 300.0) -> float:
    """Event time as epoch seconds from RFC 3339 text or epoch seconds.

    ``now`` is the source's clock; when given, times more than ``max_future_skew``
    ahead are rejected (reason ``future_timestamp``). Without ``now`` (a replay of
    history) only the fixed 2000…2100 range is checked.

    >>> parse_timestamp("2026-11-21T10:15:00Z")
    1795256100.0
    >>> parse_timestamp("2026-11-21t12:15:00.000001+02:00"), parse_timestamp("2026-11-21T10:15:00.5z")
    (1795256100.000001, 1795256100.5)
    >>> parse_timestamp("2026-11-21T10:15:00.123456500Z")  # nanoseconds: to the µs, half up
    1795256100.123457
    >>> parse_timestamp(1795256100)
    1795256100.0
    >>> parse_timestamp(1795256100123)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fairwatch.streaming.schema.EventError: ts: outside 2000-01-01 … 2100-01-01 ...
    """
    if isinstance(value, str):
        try:
            # RFC 3339 §5.6 allows a lower-case "z" (fromisoformat takes any date-time separator, "t" too).
            dt = datetime.fromisoformat(value[:-1] + "Z" if value.endswith("z") else value)
        except ValueError:
            raise EventError("bad_timestamp", MSG_TS.format(why="not RFC 3339", value=_short(value))) from None
        if dt.tzinfo is None:
            raise EventError("bad_timestamp", MSG_TS.format(why="RFC 3339 needs a UTC offset or Z", value=value))
        frac = _FRACTION.search(value)
        if frac is not None and len(frac[1]) > 6 and frac[1][6] >= "5":
            dt += _ONE_US  # nanosecond stamps: rounded to the microsecond, half up
        ts = dt.timestamp()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        ts = float(value)
        if not math.isfinite(ts):
            raise EventError("bad_timestamp", MSG_TS.format(why="must be finite", value=value))
    else:
        raise EventError(
            "bad_timestamp",
            MSG_TS.format(why="must be RFC 3339 text or epoch seconds", value=_short(value)),
        )
    if not MIN_TS <= ts < MAX_TS:
        raise EventError(
            "bad_timestamp",
            MSG_TS.format(
                why="outside 2000-01-01 … 2100-01-01 (epoch milliseconds instead of seconds?)",
                value=value,
            ),
        )
    if now is not None and ts - now > max_future_skew:
        raise EventError(
            "future_timestamp",
            MSG_FUTURE.format(ahead=ts - now, limit=max_future_skew, value=value),
        )
    return ts


def _load(raw: bytes) -> dict:
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError("oversized", MSG_OVERSIZED.format(size=len(raw), limit=MAX_EVENT_BYTES))
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN/Infinity/1e999; the stdlib reads them, so a non-finite
        # score gets its precise reason instead of a generic parse error.
        try:
            obj = json.loads(raw, parse_int=_json_int)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise EventError("malformed_json", MSG_MALFORMED.format(error=exc)) from None
    if not isinstance(obj, dict):
        raise EventError("not_an_object", MSG_NOT_OBJECT.format(kind=type(obj).__name__))
    return obj


def _json_int(text: str) -> int | float:
    """An integer of the stdlib fallback; past Python's digit limit for ``int`` (4,300 by
    default) a float, as msgspec reads it: the number is valid JSON, and only a field with a
    rule (``score``, ``decision``, …) can refuse it."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _require(obj: dict, field: str) -> Any:
    try:
        return obj[field]
    except KeyError:
        raise EventError(f"missing_field:{field}", MSG_MISSING.format(field=field)) from None


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _text(value: str, field: str, reason: str) -> str:
    """``value`` unless it holds a lone surrogate (json's fallback reads ``"\\ud800"`` into one)."""
    if not value.isascii() and _SURROGATE.search(value):
        raise EventError(reason, MSG_SURROGATE.format(field=field, value=_short(value)))
    return value


def _label_text(value: str, field: str, reason: str) -> str:
    """``value`` as :func:`_text`, and without control characters: a model, version, attribute
    name or group, which a metric label, a PostgreSQL column and a report will hold."""
    if not value.isprintable() and _CONTROL.search(value):
        raise EventError(reason, MSG_CONTROL.format(field=field, value=_short(value)))
    return _text(value, field, reason)


def _name(obj: dict, field: str) -> str:
    value = _require(obj, field)
    if not isinstance(value, str):
        raise EventError(f"bad_type:{field}", MSG_TYPE.format(field=field, expected="a string", value=_short(value)))
    if not 0 < len(value) <= MAX_NAME_CHARS:
        raise EventError("bad_model", MSG_MODEL.format(field=field, value=_short(value)))
    return _label_text(value, field, "bad_model")


def _decision_id(obj: dict) -> str:
    value = _require(obj, "decision_id")
    if not isinstance(value, str):
        raise EventError(
            "bad_type:decision_id",
            MSG_TYPE.format(field="decision_id", expected="a string", value=_short(value)),
        )
    if not 0 < len(value) <= MAX_ID_CHARS:
        raise EventError("bad_decision_id", MSG_ID.format(value=_short(value)))
    return _text(value, "decision_id", "bad_decision_id")


def _label(value: Any, *, allow_null: bool) -> int:
    if value is None and allow_null:
        return -1
    if type(value) is int and (value == 0 or value == 1):
        return value
    raise EventError("bad_label", MSG_LABEL.format(value=_short(value)))


def _attributes(value: Any) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise EventError("bad_attributes", MSG_ATTRS.format(why="must be a JSON object", value=_short(value)))
    if len(value) > MAX_ATTRIBUTES:
        raise EventError(
            "bad_attributes",
            MSG_ATTRS.format(why=f"at most {MAX_ATTRIBUTES} attributes", value=_short(value)),
        )
    for name, group in value.items():
        if not 0 < len(name) <= MAX_NAME_CHARS or "," in name:
            raise EventError(
                "bad_attributes",
                MSG_ATTRS.format(why="names must be 1..128 characters without ','", value=_short(name)),
            )
        _label_text(name, "attributes", "bad_attributes")
        if group is None:
            continue
        if not isinstance(group, str):
            raise EventError(
                "bad_attribute_value",
                MSG_ATTR_VALUE.format(name=name, why="must be a string or null", value=_short(group)),
            )
        if len(group) > MAX_NAME_CHARS or "," in group or group in RESERVED_GROUPS:
            raise EventError(
                "bad_attribute_value",
                MSG_ATTR_VALUE.format(
                    name=name,
                    why="must be at most 128 characters, without ',' and not a reserved group name",
                    value=_short(group),
                ),
            )
        _label_text(group, f"attributes.{name}", "bad_attribute_value")
    return value


def _check_schema(obj: dict, expected: str) -> None:
    schema = _require(obj, "schema")
    if schema != expected:
        raise EventError("unknown_schema", MSG_SCHEMA.format(expected=expected, value=_short(schema)))


def validate_decision(raw: bytes, *, now: float | None = None, max_future_skew: float = 300.0) -> Decision:
    """Decode and validate one decision; raises :class:`EventError`."""
    return Decision(*decision_fields(raw, now=now, max_future_skew=max_future_skew))


def decision_fields(
    raw: bytes, *, now: float | None = None, max_future_skew: float = 300.0
) -> tuple[str, str, str, float, float, int, dict[str, str | None], int, int]:
    """The fields of :class:`Decision` as a plain tuple, or :class:`EventError` naming the problem."""
    obj = _load(raw)
    _check_schema(obj, DECISION_SCHEMA)
    decision_id = _decision_id(obj)
    model = _name(obj, "model")
    version = _name(obj, "model_version")
    ts = parse_timestamp(_require(obj, "ts"), now=now, max_future_skew=max_future_skew)
    score = _require(obj, "score")
    if type(score) is not float:
        if type(score) is not int:
            raise EventError("bad_type:score", MSG_TYPE.format(field="score", expected="a number", value=_short(score)))
        score = float(score)
    if not math.isfinite(score):
        raise EventError("non_finite_score", MSG_SCORE_FINITE.format(value=score))
    if not 0.0 <= score <= 1.0:
        raise EventError("score_out_of_range", MSG_SCORE_RANGE.format(value=score))
    decision = _require(obj, "decision")
    if type(decision) is not int or not (decision == 0 or decision == 1):
        raise EventError("bad_decision", MSG_DECISION.format(value=_short(decision)))
    attributes = _attributes(_require(obj, "attributes"))
    features = obj.get("features")
    if features is not None and not isinstance(features, dict):
        raise EventError("bad_features", MSG_FEATURES.format(value=_short(features)))
    label = _label(obj.get("label"), allow_null=True)
    return decision_id, model, version, ts, score, decision, attributes, label, _fingerprint(raw)


def validate_outcome(raw: bytes, *, now: float | None = None, max_future_skew: float = 300.0) -> Outcome:
    """Decode and validate one outcome; raises :class:`EventError`."""
    return Outcome(*outcome_fields(raw, now=now, max_future_skew=max_future_skew))


def outcome_fields(
    raw: bytes, *, now: float | None = None, max_future_skew: float = 300.0
) -> tuple[str, str, float, int]:
    """The fields of :class:`Outcome` as a plain tuple; raises :class:`EventError`."""
    obj = _load(raw)
    _check_schema(obj, OUTCOME_SCHEMA)
    decision_id = _decision_id(obj)
    model = _name(obj, "model")
    ts = parse_timestamp(_require(obj, "ts"), now=now, max_future_skew=max_future_skew)
    label = _label(_require(obj, "label"), allow_null=False)
    return decision_id, model, ts, label


def decode_decision(
    raw: bytes,
    *,
    now: float | None = None,
    max_future_skew: float = 300.0,
    topic: str = "fairness.decisions",
    partition: int | None = None,
    offset: int | None = None,
) -> Decision | Rejection:
    """Like :func:`validate_decision` but returns a :class:`Rejection` instead of raising."""
    try:
        return validate_decision(raw, now=now, max_future_skew=max_future_skew)
    except EventError as exc:
        return Rejection(exc.reason, str(exc), raw, topic, partition, offset)


def decode_outcome(
    raw: bytes,
    *,
    now: float | None = None,
    max_future_skew: float = 300.0,
    topic: str = "fairness.outcomes",
    partition: int | None = None,
    offset: int | None = None,
) -> Outcome | Rejection:
    """Like :func:`validate_outcome` but returns a :class:`Rejection` instead of raising."""
    try:
        return validate_outcome(raw, now=now, max_future_skew=max_future_skew)
    except EventError as exc:
        return Rejection(exc.reason, str(exc), raw, topic, partition, offset)
