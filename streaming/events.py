"""Event schema (docs/events.md): bytes → validated decision/outcome records.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import numpy as np
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
    "Decision",
    "Outcome",
    "Rejection",
    "EventError",
    "decode_decision",
    "decode_outcome",
    "decision_fields",
    "decode_decision_batch",
    "DecisionColumns",
    "attribute_set",
    "attribute_generation",
    "stamps_to_epoch",
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
#: Plausible event-time range (docs/events.md): epoch milliseconds sent as seconds land outside.
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
MSG_MODEL = "{field}: must be 1..128 characters, got {value!r}"
MSG_SCORE_RANGE = "score: must be in [0, 1], got {value!r}"
MSG_SCORE_FINITE = "score: must be finite, got {value!r}"
MSG_DECISION = "decision: must be 0 or 1, got {value!r}"
MSG_LABEL = "label: must be 0, 1 or null, got {value!r}"
MSG_TS = "ts: {why}, got {value!r}"
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
    >>> parse_timestamp(1795256100)
    1795256100.0
    >>> parse_timestamp(1795256100123)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fairwatch.streaming.events.EventError: ts: outside 2000-01-01 … 2100-01-01 ...
    """
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise EventError("bad_timestamp", MSG_TS.format(why="not RFC 3339", value=_short(value))) from None
        if dt.tzinfo is None:
            raise EventError("bad_timestamp", MSG_TS.format(why="RFC 3339 needs a UTC offset or Z", value=value))
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
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise EventError("malformed_json", MSG_MALFORMED.format(error=exc)) from None
    if not isinstance(obj, dict):
        raise EventError("not_an_object", MSG_NOT_OBJECT.format(kind=type(obj).__name__))
    return obj


def _require(obj: dict, field: str) -> Any:
    try:
        return obj[field]
    except KeyError:
        raise EventError(f"missing_field:{field}", MSG_MISSING.format(field=field)) from None


def _name(obj: dict, field: str) -> str:
    value = _require(obj, field)
    if not isinstance(value, str):
        raise EventError(f"bad_type:{field}", MSG_TYPE.format(field=field, expected="a string", value=_short(value)))
    if not 0 < len(value) <= MAX_NAME_CHARS:
        raise EventError("bad_model", MSG_MODEL.format(field=field, value=_short(value)))
    return value


def _decision_id(obj: dict) -> str:
    value = _require(obj, "decision_id")
    if not isinstance(value, str):
        raise EventError(
            "bad_type:decision_id",
            MSG_TYPE.format(field="decision_id", expected="a string", value=_short(value)),
        )
    if not 0 < len(value) <= MAX_ID_CHARS:
        raise EventError("bad_decision_id", MSG_ID.format(value=_short(value)))
    return value


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


@dataclass(slots=True)
class DecisionColumns:
    """A batch of valid decisions, column by column (the engine's input).

    ``sets`` holds each event's attribute set as an id of the process-wide
    registry (:func:`attribute_set` gives back ``tuple(attributes.items())``;
    ids stay valid while :func:`attribute_generation` is unchanged). ``label``
    is -1 where absent; ``fingerprint`` is the CRC-32C of the raw bytes.
    """

    ids: list[str]
    models: list[str]
    versions: list[str]
    ts: np.ndarray
    score: np.ndarray
    decision: np.ndarray
    sets: np.ndarray
    label: np.ndarray
    fingerprint: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def keys(self) -> list[tuple]:
        """Each event's attributes as ``tuple(attributes.items())``."""
        return list(map(_ATTR_KEYS.__getitem__, self.sets.tolist()))

    def rows(self) -> list[tuple]:
        """Per event: the fields of :class:`Decision`, attributes as an item tuple."""
        return list(
            zip(
                self.ids,
                self.models,
                self.versions,
                self.ts.tolist(),
                self.score.tolist(),
                self.decision.tolist(),
                self.keys,
                self.label.tolist(),
                self.fingerprint.tolist(),
                strict=True,
            )
        )

    def take(self, idx: np.ndarray) -> DecisionColumns:
        """The events at positions ``idx`` (an index array), in that order."""
        pick = idx.tolist()
        return DecisionColumns(
            [self.ids[j] for j in pick],
            [self.models[j] for j in pick],
            [self.versions[j] for j in pick],
            self.ts[idx],
            self.score[idx],
            self.decision[idx],
            self.sets[idx],
            self.label[idx],
            self.fingerprint[idx],
        )

    @classmethod
    def empty(cls) -> DecisionColumns:
        i64 = np.zeros(0, np.int64)
        return cls([], [], [], np.zeros(0), np.zeros(0), i64, i64, i64, i64)

    @classmethod
    def from_rows(cls, rows: Sequence[tuple]) -> DecisionColumns:
        """From rows as :func:`decision_fields` gives them (attributes as a dict)."""
        if not rows:
            return cls.empty()
        ids, models, versions, ts, score, decision, attrs, label, fp = zip(*rows, strict=True)
        return cls(
            list(ids),
            list(models),
            list(versions),
            np.array(ts, np.float64),
            np.array(score, np.float64),
            np.array(decision, np.int64),
            np.array([_attribute_set_id(tuple(a.items())) for a in attrs], np.int64),
            np.array(label, np.int64),
            np.array(fp, np.int64),
        )

    @classmethod
    def concat(cls, parts: Sequence[DecisionColumns]) -> DecisionColumns:
        parts = [p for p in parts if p.ids]
        if len(parts) <= 1:
            return parts[0] if parts else cls.empty()
        return cls(
            list(chain.from_iterable(p.ids for p in parts)),
            list(chain.from_iterable(p.models for p in parts)),
            list(chain.from_iterable(p.versions for p in parts)),
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _ARRAY_FIELDS),
        )


_ARRAY_FIELDS = ("ts", "score", "decision", "sets", "label", "fingerprint")

#: Events decoded together (a run): small enough that the run's objects stay in cache.
_RUN = 1024
#: Runs this short that hold a problem are validated event by event.
_LEAF = 32


def decode_decision_batch(
    raws: Sequence[bytes], *, now: float | None = None, max_future_skew: float = 300.0
) -> tuple[DecisionColumns, list[tuple[int, EventError]]]:
    """Validate a batch of decisions (the engine's hot path).

    Returns ``(good, bad)``: ``good`` holds the valid events as
    :class:`DecisionColumns`, in arrival order; ``bad`` holds ``(position, error)``.
    Same acceptance and the same reasons as :func:`decision_fields` (a tested
    property).

    The checks run column by column in C-level loops (``map``, ``set``, numpy)
    over runs of :data:`_RUN` events. Only a run that holds a problem is split,
    down to :data:`_LEAF` events, which get the full per-event validation that
    names the reason. A clean stream costs no Python bytecode per event.
    """
    global _attr_generation
    if len(_ATTR_IDS) >= _CACHE_LIMIT:  # only between batches: ids stay valid within one
        _ATTR_IDS.clear()
        _ATTR_KEYS.clear()
        _attr_generation += 1
    parts: list[DecisionColumns] = []
    bad: list[tuple[int, EventError]] = []
    for lo in range(0, len(raws), _RUN):
        run = raws[lo : lo + _RUN]
        try:
            objs: list = list(map(orjson.loads, run)) if max(map(len, run)) <= MAX_EVENT_BYTES else None
        except orjson.JSONDecodeError:
            objs = None
        if objs is None:
            objs = [_loads_or_none(raw) for raw in run]
        _decode_run(run, objs, 0, len(run), lo, now, max_future_skew, parts, bad)
    return DecisionColumns.concat(parts), bad


def _loads_or_none(raw: bytes) -> object:
    if len(raw) > MAX_EVENT_BYTES:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _decode_run(raws, objs, lo, hi, base, now, skew, parts, bad) -> None:
    cols = _run_columns(raws[lo:hi], objs[lo:hi], now, skew)
    if cols is not None:
        parts.append(cols)
    elif hi - lo > _LEAF:
        mid = (lo + hi) // 2
        _decode_run(raws, objs, lo, mid, base, now, skew, parts, bad)
        _decode_run(raws, objs, mid, hi, base, now, skew, parts, bad)
    else:
        rows = []
        for j in range(lo, hi):
            try:
                rows.append(decision_fields(raws[j], now=now, max_future_skew=skew))
            except EventError as exc:
                bad.append((base + j, exc))
        parts.append(DecisionColumns.from_rows(rows))


_FIELDS = [
    itemgetter(k) for k in ("schema", "decision_id", "model", "model_version", "ts", "score", "decision", "attributes")
]
_NONE = type(None)
_LABEL_CODE = {None: -1, 0: 0, 1: 1}


def _names_ok(values: Iterable, limit: int) -> bool:
    return all(type(v) is str and 0 < len(v) <= limit for v in values)


def _run_columns(raws, objs, now, skew) -> DecisionColumns | None:
    """Columns of a run in which every event is valid and in the fast form, else ``None``.

    Fast form: a ``YYYY-MM-DDTHH:MM:SS.mmmZ`` timestamp, and an attribute set
    that full validation accepted before (learned here when new).
    """
    n = len(objs)
    try:
        schema, ids, models, versions, stamps, scores, decisions, attrs = [list(map(g, objs)) for g in _FIELDS]
        if set(schema) != {DECISION_SCHEMA}:
            return None
        if not (_names_ok(set(models), MAX_NAME_CHARS) and _names_ok(set(versions), MAX_NAME_CHARS)):
            return None
        if set(map(type, ids)) != {str}:
            return None
        id_len = set(map(len, ids))
        if min(id_len) < 1 or max(id_len) > MAX_ID_CHARS:
            return None
        score = np.array(scores, np.float64) if set(map(type, scores)) <= {float, int} else None
        if score is None or not (score.min() >= 0.0 and score.max() <= 1.0):
            return None
        if set(map(type, decisions)) != {int} or not set(decisions) <= {0, 1}:
            return None
        labels = list(map(dict.get, objs, repeat("label")))
        if not set(map(type, labels)) <= {_NONE, int}:
            return None
        present = set(labels)
        if present == {None}:  # the usual case: labels come later, as outcomes
            label = np.full(n, -1, np.int64)
        elif present <= {None, 0, 1}:  # no bool here: the types were checked
            label = np.fromiter(map(_LABEL_CODE.__getitem__, labels), np.int64, n)
        else:
            return None
        if not set(map(type, map(dict.get, objs, repeat("features")))) <= {dict, _NONE}:
            return None
        ts = stamps_to_epoch(stamps)
        if ts is None or (now is not None and ts.max() - now > skew):
            return None
        keys = list(map(tuple, map(dict.items, attrs)))
        sets = list(map(_ATTR_IDS.get, keys))
        if None in sets:
            if not _learn_attributes(keys):
                return None
            sets = list(map(_ATTR_IDS.get, keys))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    return DecisionColumns(
        ids,
        models,
        versions,
        ts,
        score,
        np.array(decisions, np.int64),
        np.array(sets, np.int64),
        label,
        np.fromiter(map(_fingerprint, raws), np.int64, n),
    )


_TS_SEPARATORS = {4: "-", 7: "-", 10: "T", 13: ":", 16: ":", 19: ".", 23: "Z"}
_TS_SEP_AT = np.array(list(_TS_SEPARATORS), np.intp)
_TS_SEP_CODE = np.array([ord(c) for c in _TS_SEPARATORS.values()], np.uint8)
_TS_DIGIT_AT = np.array([i for i in range(24) if i not in _TS_SEPARATORS], np.intp)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


def stamps_to_epoch(stamps: Sequence[object]) -> np.ndarray | None:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS.mmmZ`` stamps, vectorised; ``None`` if any
    stamp has another form or is not a valid time in 2000 … 2100.

    Gives exactly :func:`parse_timestamp`'s value (a tested property): the
    calendar arithmetic is in integers and the one division is correctly rounded.
    Written by hand because neither numpy's nor pandas' ISO parser is as strict
    as :meth:`datetime.fromisoformat` about what it accepts, and both are slower.

    >>> stamps_to_epoch(["2026-11-21T10:15:00.123Z", "2000-01-01T00:00:00.000Z"]).tolist()
    [1795256100.123, 946684800.0]
    >>> stamps_to_epoch(["2026-02-29T00:00:00.000Z"]) is None  # not a leap year
    True
    """
    try:
        if set(map(len, stamps)) != {24}:
            return None
        text = "".join(stamps).encode("ascii")  # str only (else TypeError), ASCII only
    except (TypeError, UnicodeEncodeError):
        return None
    chars = np.frombuffer(text, np.uint8).reshape(len(stamps), 24)
    if not (chars[:, _TS_SEP_AT] == _TS_SEP_CODE).all():
        return None
    d = chars[:, _TS_DIGIT_AT].astype(np.int64)
    if d.min() < 48 or d.max() > 57:
        return None
    d -= 48
    c = d.T  # one row per digit position (no BLAS: its threads cost more than they save here)
    year = c[0] * 1000 + c[1] * 100 + c[2] * 10 + c[3]
    month, day, hour, minute, second = c[4:14:2] * 10 + c[5:14:2]
    milli = c[14] * 100 + c[15] * 10 + c[16]
    if month.min() < 1 or month.max() > 12 or hour.max() > 23 or minute.max() > 59 or second.max() > 59:
        return None
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    if day.min() < 1 or (day > _DAYS_IN_MONTH[month] + (leap & (month == 2))).any():
        return None
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    millis = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli
    ts = millis / 1000  # int64 → float64 exact below 2**53, then one correctly rounded division
    if ts.min() < MIN_TS or ts.max() >= MAX_TS:
        return None
    return ts


def _attribute_set_id(key: tuple) -> int:
    """Id of an attribute set (already validated) in the registry, added when new."""
    sid = _ATTR_IDS.get(key)
    if sid is None:
        sid = _ATTR_IDS[key] = len(_ATTR_KEYS)
        _ATTR_KEYS.append(key)
    return sid


def _learn_attributes(keys: list[tuple]) -> bool:
    """Validate and register attribute sets not seen before; ``False`` if one is invalid."""
    for key in dict.fromkeys(keys):
        if key not in _ATTR_IDS:
            try:
                _attributes(dict(key))
            except EventError:
                return False
            _attribute_set_id(key)
    return True


def attribute_set(set_id: int) -> tuple:
    """The attribute set (``tuple(attributes.items())``) behind an id of :class:`DecisionColumns`."""
    return _ATTR_KEYS[set_id]


def attribute_generation() -> int:
    """Changes whenever the registry is reset (ids seen before then mean nothing now)."""
    return _attr_generation


# The registry of attribute sets known to be valid, bounded: reset between batches when full.
_ATTR_IDS: dict[tuple, int] = {}
_ATTR_KEYS: list[tuple] = []
_attr_generation = 0
_CACHE_LIMIT = 100_000


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
