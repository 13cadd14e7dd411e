"""The batch fast path: raw decision bytes → :class:`DecisionColumns` (the engine's input).

Each run of events goes first to the C fast path (``streaming/_fastpath.c``, where the
install built it: :data:`NATIVE`), which reads the forms producers write in one pass and
declines anything else; a run it declines takes the msgspec path below, unchanged.

msgspec decodes each event into a typed struct and checks in C what the
schema's scalar rules say (schema name, id and name lengths, score in [0, 1],
decision and label values, types) and parses RFC 3339 ``ts`` text into an aware
``datetime`` (``T``/``t``/space, 0 to 9 or more fraction digits rounded to the
microsecond half up as :func:`~fairwatch.streaming.schema.parse_timestamp` rounds them,
``Z``/``z`` or an offset), converted by ``datetime.timestamp`` as the validator converts
it; attribute sets are looked up in an :class:`AttributeRegistry` by their raw JSON bytes. Any event that
fails any of this sends its run down to the per-event validator of
:mod:`fairwatch.streaming.schema`, which alone decides rejection reasons and
messages — so msgspec's errors never reach a user, and the fast path can only
ever accept a subset of what the validator accepts (a tested property).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import chain
from typing import Annotated, Literal

import msgspec
import numpy as np
import orjson
from crc32c import crc32c as _fingerprint
from fairwatch.streaming.schema import (
    DECISION_SCHEMA,
    MAX_EVENT_BYTES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_TS,
    MIN_TS,
    OUTCOME_SCHEMA,
    EventError,
    _attributes,
    decision_fields,
    outcome_fields,
)

__all__ = [
    "AttributeRegistry",
    "DecisionColumns",
    "OutcomeColumns",
    "decode_decision_batch",
    "decode_outcome_batch",
    "stamps_column",
]


class AttributeRegistry:
    """Attribute sets known to be valid, each with a small integer id.

    Owned by one engine (two engines never share ids). Bounded: :meth:`reset_if_full`
    forgets everything between batches once ``limit`` sets are known, and bumps
    ``generation`` so that whoever cached ids knows they mean nothing now.

    >>> reg = AttributeRegistry()
    >>> reg.learn_raw(b'{"sex":"F"}'), reg.learn_raw(b'{"sex": "F"}'), reg.key(0)
    (0, 0, (('sex', 'F'),))
    >>> reg.learn_raw(b'{"sex":"a,b"}') is None  # invalid: never registered
    True
    """

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self.generation = 0
        self._by_raw: dict[bytes, int] = {}
        self._by_key: dict[tuple, int] = {}
        self._keys: list[tuple] = []

    def __len__(self) -> int:
        return len(self._keys)

    def key(self, set_id: int) -> tuple:
        """The attribute set (``tuple(attributes.items())``) behind an id."""
        return self._keys[set_id]

    def id_of(self, key: tuple) -> int:
        """Id of an attribute set already validated, added when new."""
        sid = self._by_key.get(key)
        if sid is None:
            sid = self._by_key[key] = len(self._keys)
            self._keys.append(key)
        return sid

    def ids_of_raw(self, raws: list[bytes]) -> list[int] | None:
        """Ids of attribute objects given as raw JSON; ``None`` if one of them is invalid."""
        ids = list(map(self._by_raw.get, raws))
        if None in ids:
            for raw in dict.fromkeys(raws):
                if raw not in self._by_raw and self.learn_raw(raw) is None:
                    return None
            ids = list(map(self._by_raw.__getitem__, raws))
        return ids

    def learn_raw(self, raw: bytes) -> int | None:
        """Validate one attribute object's raw JSON and register it; ``None`` if invalid."""
        sid = self._by_raw.get(raw)
        if sid is None:
            try:
                value = orjson.loads(raw)
                _attributes(value)
            except (orjson.JSONDecodeError, EventError):
                return None
            sid = self._by_raw[raw] = self.id_of(tuple(value.items()))
        return sid

    def reset_if_full(self) -> None:
        if len(self._keys) >= self.limit:
            self._by_raw.clear()
            self._by_key.clear()
            self._keys.clear()
            self.generation += 1


@dataclass(slots=True)
class DecisionColumns:
    """A batch of valid decisions, column by column (the engine's input).

    ``sets`` holds each event's attribute set as an id of ``registry``
    (``registry.key(id)`` gives back ``tuple(attributes.items())``; ids stay
    valid while ``registry.generation`` is unchanged). ``label`` is -1 where
    absent; ``fingerprint`` is the CRC-32C of the raw bytes.
    """

    registry: AttributeRegistry
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
        return list(map(self.registry.key, self.sets.tolist()))

    def rows(self) -> list[tuple]:
        """Per event: the fields of :class:`~fairwatch.streaming.schema.Decision`, attributes as an item tuple."""
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
            self.registry,
            [self.ids[j] for j in pick],
            [self.models[j] for j in pick],
            [self.versions[j] for j in pick],
            *(getattr(self, f)[idx] for f in _ARRAY_FIELDS),
        )

    def slice(self, lo: int, hi: int) -> DecisionColumns:
        """The events at positions ``lo`` … ``hi - 1`` (lists sliced, arrays as views)."""
        if lo == 0 and hi >= len(self.ids):
            return self
        return DecisionColumns(
            self.registry,
            self.ids[lo:hi],
            self.models[lo:hi],
            self.versions[lo:hi],
            *(getattr(self, f)[lo:hi] for f in _ARRAY_FIELDS),
        )

    @classmethod
    def empty(cls, registry: AttributeRegistry) -> DecisionColumns:
        i64 = np.zeros(0, np.int64)
        return cls(registry, [], [], [], np.zeros(0), np.zeros(0), i64, i64, i64, i64)

    @classmethod
    def from_rows(cls, registry: AttributeRegistry, rows: Sequence[tuple]) -> DecisionColumns:
        """From rows as :func:`~fairwatch.streaming.schema.decision_fields` gives them (attributes as a dict)."""
        if not rows:
            return cls.empty(registry)
        ids, models, versions, ts, score, decision, attrs, label, fp = zip(*rows, strict=True)
        return cls(
            registry,
            list(ids),
            list(models),
            list(versions),
            np.array(ts, np.float64),
            np.array(score, np.float64),
            np.array(decision, np.int64),
            np.array([registry.id_of(tuple(a.items())) for a in attrs], np.int64),
            np.array(label, np.int64),
            np.array(fp, np.int64),
        )

    @classmethod
    def concat(cls, registry: AttributeRegistry, parts: Sequence[DecisionColumns]) -> DecisionColumns:
        parts = [p for p in parts if p.ids]
        if len(parts) <= 1:
            return parts[0] if parts else cls.empty(registry)
        return cls(
            registry,
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

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
#: RFC 3339 text with ``Z`` or an offset (a naive time fails, and goes to the per-event validator)
_Stamp = Annotated[datetime, msgspec.Meta(tz=True)]


class _AnyObject(msgspec.Struct, gc=False):
    """Any JSON object, skipped in C: ``features`` need only be an object or null."""


class _FastDecision(msgspec.Struct, gc=False):
    """decision/v1 as the fast path reads it: scalar rules in C; attributes kept as raw JSON
    (checked once per distinct set), features only checked for being an object or null."""

    schema: Literal["decision/v1"]
    decision_id: _Id
    model: _Name
    model_version: _Name
    ts: _Stamp | float
    score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    decision: Literal[0, 1]
    attributes: msgspec.Raw
    features: _AnyObject | None = None
    label: Literal[0, 1] | None = None


class _FastOutcome(msgspec.Struct, gc=False):
    """outcome/v1 as the fast path reads it."""

    schema: Literal["outcome/v1"]
    decision_id: _Id
    model: _Name
    ts: _Stamp | float
    label: Literal[0, 1]


assert (DECISION_SCHEMA, OUTCOME_SCHEMA) == ("decision/v1", "outcome/v1")  # the Literals above spell them out
_DECODERS = {cls: msgspec.json.Decoder(cls).decode for cls in (_FastDecision, _FastOutcome)}

try:  # the C fast path (streaming/_fastpath.c), built by the install where a C compiler is found
    from fairwatch.streaming import _fastpath
except ImportError:  # pragma: no cover - an install without a compiler: msgspec alone, same results
    _fastpath = None
#: Whether the C fast path is built; without it every run takes the msgspec path (slower, same results).
NATIVE = _fastpath is not None
_LIMITS = (MAX_EVENT_BYTES, MAX_ID_CHARS, MAX_NAME_CHARS)
_astuple = msgspec.structs.astuple
_LABEL_CODE = {None: -1, 0: 0, 1: 1}


def decode_decision_batch(
    raws: Sequence[bytes],
    *,
    now: float | None = None,
    max_future_skew: float = 300.0,
    registry: AttributeRegistry | None = None,
) -> tuple[DecisionColumns, list[tuple[int, EventError]]]:
    """Validate a batch of decisions (the engine's hot path).

    Returns ``(good, bad)``: ``good`` holds the valid events as
    :class:`DecisionColumns`, in arrival order; ``bad`` holds ``(position, error)``.
    Same acceptance, values and reasons as
    :func:`~fairwatch.streaming.schema.decision_fields` (a tested property).
    ``registry`` is the caller's attribute-set registry (an engine keeps one; default:
    a fresh one for this call).

    The checks run in C (msgspec, ``map``, numpy) over runs of :data:`_RUN` events.
    Only a run that holds a problem is split, down to :data:`_LEAF` events, which get
    the per-event validation that names the reason. A clean stream costs no Python
    bytecode per event.
    """
    reg = AttributeRegistry() if registry is None else registry
    reg.reset_if_full()  # only between batches: ids stay valid within one
    parts: list[DecisionColumns] = []
    bad: list[tuple[int, EventError]] = []
    fast = partial(_run_columns, now=now, skew=max_future_skew, reg=reg)
    slow = partial(decision_fields, now=now, max_future_skew=max_future_skew)
    raws = raws if type(raws) is list else list(raws)  # the C path reads a list
    for lo in range(0, len(raws), _RUN):
        run = raws[lo : lo + _RUN]
        _decode_run(run, 0, len(run), lo, fast, slow, partial(DecisionColumns.from_rows, reg), parts, bad)
    return DecisionColumns.concat(reg, parts), bad


def _decode_run(raws, lo, hi, base, fast, slow, from_rows, parts, bad) -> None:
    """``fast`` over ``raws[lo:hi]``; on a problem, halves, down to ``slow`` per event."""
    cols = fast(raws[lo:hi])
    if cols is not None:
        parts.append(cols)
    elif hi - lo > _LEAF:
        mid = (lo + hi) // 2
        _decode_run(raws, lo, mid, base, fast, slow, from_rows, parts, bad)
        _decode_run(raws, mid, hi, base, fast, slow, from_rows, parts, bad)
    else:
        rows = []
        for j in range(lo, hi):
            try:
                rows.append(slow(raws[j]))
            except EventError as exc:
                bad.append((base + j, exc))
        parts.append(from_rows(rows))


def _decode_all(raws, cls: type[msgspec.Struct]) -> list | None:
    """Each raw event decoded into ``cls``, or ``None`` if one is oversized or does not fit."""
    try:
        if max(map(len, raws)) > MAX_EVENT_BYTES or not _text_only(raws):
            return None
        return list(map(_DECODERS[cls], raws))
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, RecursionError):
        return None


#: a ``\\u`` escape of a UTF-16 surrogate (``\\ud800``–``\\udfff``; or such text after an escaped ``\\``)
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _text_only(raws) -> bool:
    """Whether every event is UTF-8 throughout and escapes no lone surrogate, as the per-event
    validator requires: msgspec checks the UTF-8 of the strings it reads, not of those it skips
    (``features``, unknown fields), and reads ``"\\ud800"`` into a str no checkpoint could write.
    Any ``\\u`` escape of a surrogate sends the run to the validator (a pair is fine there).
    One ``\\n`` between events: no multi-byte sequence spans two of them."""
    joined = b"\n".join(raws)
    if b"\\" in joined and _MAYBE_SURROGATE.search(joined):
        return False
    if joined.isascii():
        return True
    try:
        joined.decode()
    except UnicodeDecodeError:
        return False
    return True


def _printable(*columns: Sequence[str]) -> bool:
    """Whether the names hold no control character (nor any other character Python does not
    print: those go to the validator, which refuses only control characters)."""
    return all("".join(c).isprintable() for c in columns)


def _run_columns(raws, now, skew, reg: AttributeRegistry) -> DecisionColumns | None:
    """Columns of a run in which every event is valid and in a fast form, else ``None``.

    The C fast path first; a run it does not take (it takes only what it is sure of) goes
    to msgspec. A run the C path reads but whose ``ts`` range or attribute sets fail would
    fail msgspec's checks too (the same checks of the same values): ``None`` at once."""
    if _fastpath is not None:
        got = _fastpath.decisions(raws, *_LIMITS)
        if got is not None:
            return _native_columns(got, now, skew, reg)
    n = len(raws)
    objs = _decode_all(raws, _FastDecision)
    if objs is None:
        return None
    # One transpose in C (structs → field tuples): cheaper than one attrgetter pass per field.
    _, ids, models, versions, stamps, scores, decisions, attrs, _, labels = zip(*map(_astuple, objs), strict=True)
    if not _printable(models, versions):
        return None
    ts = _stamps(stamps, now, skew)
    if ts is None:
        return None
    sets = reg.ids_of_raw(list(map(bytes, attrs)))
    if sets is None:
        return None
    present = set(labels)
    if present == {None}:  # the usual case: labels come later, as outcomes
        label = np.full(n, -1, np.int64)
    else:
        label = np.fromiter(map(_LABEL_CODE.__getitem__, labels), np.int64, n)
    return DecisionColumns(
        reg,
        list(ids),
        list(models),
        list(versions),
        ts,
        np.array(scores, np.float64),
        np.array(decisions, np.int64),
        np.array(sets, np.int64),
        label,
        np.fromiter(map(_fingerprint, raws), np.int64, n),
    )


def _native_columns(got: tuple, now, skew, reg: AttributeRegistry) -> DecisionColumns | None:
    """:class:`DecisionColumns` of a run the C fast path read (its columns as bytearrays)."""
    ids, models, versions, ts, score, decision, attrs, label, fingerprint = got
    ts = _checked(np.frombuffer(ts, np.float64), now, skew)
    if ts is None:
        return None
    sets = reg.ids_of_raw(attrs)
    if sets is None:
        return None
    return DecisionColumns(
        reg,
        ids,
        models,
        versions,
        ts,
        np.frombuffer(score, np.float64),
        np.frombuffer(decision, np.int8).astype(np.int64),
        np.array(sets, np.int64),
        np.frombuffer(label, np.int8).astype(np.int64),
        np.frombuffer(fingerprint, np.uint32).astype(np.int64),
    )


def stamps_column(stamps: Sequence[object], now: float | None = None, skew: float = 300.0) -> np.ndarray | None:
    """Epoch seconds of ``ts`` values (RFC 3339 text, epoch numbers or both) as the fast path
    reads them, range-checked (and skew-checked against ``now``); ``None`` if any value is not
    one it takes (then :func:`~fairwatch.streaming.schema.parse_timestamp` per value says why).

    >>> stamps_column(["2026-11-21T10:15:00.123Z", 1795256100.5]).tolist()
    [1795256100.123, 1795256100.5]
    >>> stamps_column(["2026-11-21T12:15:00.123456789+02:00", "2026-11-21t10:15:00z"]).tolist()
    [1795256100.123457, 1795256100.0]
    >>> stamps_column(["2026-11-21T10:15:00Z", None]), stamps_column(["2026-02-29T00:00:00Z"])
    (None, None)
    """
    try:
        values = _STAMPS(orjson.dumps(list(stamps)))
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, orjson.JSONEncodeError):
        return None
    return _stamps(values, now, skew) if values else np.zeros(0)


_STAMPS = msgspec.json.Decoder(list[_Stamp | float]).decode
_timestamp = datetime.timestamp


def _stamps(stamps: Sequence[datetime | float], now: float | None, skew: float) -> np.ndarray | None:
    """Epoch seconds of a run's decoded ``ts`` column (datetimes, numbers or both), range and
    skew checked. ``datetime.timestamp`` is ``parse_timestamp``'s own conversion (one correctly
    rounded division of the microseconds since the epoch)."""
    try:  # the usual run: RFC 3339 text throughout (a number in it raises TypeError)
        ts = np.fromiter(map(_timestamp, stamps), np.float64, len(stamps))
    except TypeError:
        if set(map(type, stamps)) == {float}:
            ts = np.array(stamps, np.float64)
        else:  # text and numbers in one run
            ts = np.array([s if type(s) is float else s.timestamp() for s in stamps], np.float64)
    return _checked(ts, now, skew)


def _checked(ts: np.ndarray, now: float | None, skew: float) -> np.ndarray | None:
    """``ts`` if every time is in range (and not too far ahead of ``now``), else ``None``."""
    if not (ts.min() >= MIN_TS and ts.max() < MAX_TS):  # also false for nan
        return None
    if now is not None and ts.max() - now > skew:
        return None
    return ts


@dataclass(slots=True)
class OutcomeColumns:
    """A batch of valid outcomes, column by column."""

    ids: list[str]
    models: list[str]
    ts: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> list[tuple]:
        """Per event: the fields of :class:`~fairwatch.streaming.schema.Outcome`."""
        return list(zip(self.ids, self.models, self.ts.tolist(), self.label.tolist(), strict=True))

    def take(self, idx: np.ndarray) -> OutcomeColumns:
        """The events at positions ``idx`` (an index array), in that order."""
        pick = idx.tolist()
        return OutcomeColumns(
            [self.ids[j] for j in pick], [self.models[j] for j in pick], self.ts[idx], self.label[idx]
        )

    def slice(self, lo: int, hi: int) -> OutcomeColumns:
        """The events at positions ``lo`` … ``hi - 1`` (lists sliced, arrays as views)."""
        if lo == 0 and hi >= len(self.ids):
            return self
        return OutcomeColumns(self.ids[lo:hi], self.models[lo:hi], self.ts[lo:hi], self.label[lo:hi])

    @classmethod
    def from_rows(cls, rows: Sequence[tuple]) -> OutcomeColumns:
        """From rows as :func:`~fairwatch.streaming.schema.outcome_fields` gives them."""
        if not rows:
            return cls([], [], np.zeros(0), np.zeros(0, np.int64))
        ids, models, ts, label = zip(*rows, strict=True)
        return cls(list(ids), list(models), np.array(ts, np.float64), np.array(label, np.int64))

    @classmethod
    def concat(cls, parts: Sequence[OutcomeColumns]) -> OutcomeColumns:
        parts = [p for p in parts if p.ids]
        if len(parts) <= 1:
            return parts[0] if parts else cls.from_rows(())
        return cls(
            list(chain.from_iterable(p.ids for p in parts)),
            list(chain.from_iterable(p.models for p in parts)),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.label for p in parts]),
        )


def decode_outcome_batch(
    raws: Sequence[bytes], *, now: float | None = None, max_future_skew: float = 300.0
) -> tuple[OutcomeColumns, list[tuple[int, EventError]]]:
    """Validate a batch of outcomes: :func:`decode_decision_batch` for ``outcome/v1``.

    Same acceptance, values and reasons as :func:`~fairwatch.streaming.schema.outcome_fields`
    (a tested property).
    """
    parts: list[OutcomeColumns] = []
    bad: list[tuple[int, EventError]] = []
    fast = partial(_outcome_run, now=now, skew=max_future_skew)
    slow = partial(outcome_fields, now=now, max_future_skew=max_future_skew)
    raws = raws if type(raws) is list else list(raws)  # the C path reads a list
    for lo in range(0, len(raws), _RUN):
        run = raws[lo : lo + _RUN]
        _decode_run(run, 0, len(run), lo, fast, slow, OutcomeColumns.from_rows, parts, bad)
    return OutcomeColumns.concat(parts), bad


def _outcome_run(raws, now, skew) -> OutcomeColumns | None:
    if _fastpath is not None:
        got = _fastpath.outcomes(raws, *_LIMITS)
        if got is not None:
            ids, models, ts, label = got
            ts = _checked(np.frombuffer(ts, np.float64), now, skew)
            return (
                None if ts is None else OutcomeColumns(ids, models, ts, np.frombuffer(label, np.int8).astype(np.int64))
            )
    objs = _decode_all(raws, _FastOutcome)
    if objs is None:
        return None
    _, ids, models, stamps, labels = zip(*map(_astuple, objs), strict=True)
    if not _printable(models):
        return None
    ts = _stamps(stamps, now, skew)
    if ts is None:
        return None
    return OutcomeColumns(list(ids), list(models), ts, np.array(labels, np.int64))
