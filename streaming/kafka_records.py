"""Kafka record batches (message format v2) decoded column-wise, for kafka-python.

kafka-python decodes every record of a fetch in Python: a ``DefaultRecord``
object, seven varints, two deserializer calls and a 13-field ``ConsumerRecord``
per record. Profiled on 300k records of 300 bytes, that loop
(``PartitionRecords._unpack_records`` and ``DefaultRecordBatch._read_msg``) is
98 % of the raw client's time, about 7.6 µs per record: more than fairwatch's
whole engine spends on a decision. The daemon needs only each record's offset
and value.

:class:`ColumnarPartitionRecords` replaces kafka-python's per-partition record
iterator in the daemon's own consumer (:func:`install`). Everything else stays
kafka-python's: the group protocol, fetch sessions, positions, errors, batch
headers, CRC checks (``check_crcs``) and decompression. What it decodes itself,
following the record format of the Kafka protocol guide
(https://kafka.apache.org/documentation/#record):

* one Python step per record to follow the ``length`` varints from record to
  record (the only sequential part);
* every other field for all records of a fetch at once with numpy:
  attributes, timestamp delta, offset delta, key length, value length, header
  count; headers themselves (rare) are walked per record;
* the same structural checks as kafka-python (a record's fields end exactly at
  its length, no bytes left after a batch's last record, no negative lengths
  except null key/value), raised as ``CorruptRecordError`` after the records
  before the bad batch were taken, as kafka-python does.

``take(n)`` returns ``(offset, value)`` tuples instead of ``ConsumerRecord``.
Anything this module does not decode itself goes through kafka-python's own
iterator, converted to the same tuples: the ``read_committed`` isolation level
(aborted transactions are filtered there) and the legacy formats v0/v1 (brokers
before 0.11; Kafka 4 no longer writes them). Control batches are skipped as
kafka-python skips them. ``tests/test_kafka_records.py`` checks that, for
batches with compression, null keys and values, headers, offset gaps and
fetches starting mid-batch, the offsets, values, positions and leader epochs
are kafka-python's own.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from operator import attrgetter

import numpy as np
from kafka.errors import CorruptRecordError
from kafka.record.util import decode_varint

try:  # kafka-python's internals this module plugs into; install() says when they moved
    from kafka.consumer.fetcher import Fetcher as _Fetcher
    from kafka.protocol.consumer.offsets import IsolationLevel as _Isolation
    from kafka.record import MemoryRecords as _MemoryRecords
    from kafka.record.default_records import DefaultRecordBatch as _DefaultRecordBatch

    _BASE = _Fetcher.PartitionRecords
    _IMPORT_ERROR = None
except (ImportError, AttributeError) as exc:  # pragma: no cover - depends on the installed kafka-python
    _BASE, _IMPORT_ERROR = object, exc

__all__ = ["ColumnarPartitionRecords", "install", "decode_fetch", "Decoded"]

log = logging.getLogger("fairwatch.streaming.kafka")

_PARAMS = [
    "self",
    "fetch_offset",
    "tp",
    "records",
    "key_deserializer",
    "value_deserializer",
    "check_crcs",
    "isolation_level",
    "aborted_transactions",
    "metric_aggregator",
    "on_drain",
]
_OFFSET_VALUE = attrgetter("offset", "value")
_U1, _U7F = np.uint64(1), np.uint64(0x7F)


class LegacyFormat(Exception):
    """A batch in message format v0/v1: kafka-python's own iterator decodes this fetch."""


class Decoded:
    """The records of one partition's fetch, from ``fetch_offset`` on, as columns."""

    __slots__ = ("offsets", "values", "epochs", "sizes", "next_offset", "last_epoch", "error")

    def __init__(self):
        self.offsets = np.empty(0, np.int64)
        self.values: list = []
        self.epochs = np.empty(0, np.int64)
        self.sizes = np.empty(0, np.int64)
        self.next_offset: int | None = None  # after the last batch (control batches included)
        self.last_epoch = -1
        self.error: Exception | None = None  # raised once the records before it were taken


def _varints(a: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zigzag varints starting at positions ``p`` of byte array ``a``: (values, positions after)."""
    b = a[p].astype(np.uint64)
    val = b & _U7F
    n = np.ones(p.size, np.int64)
    idx = np.flatnonzero(b >= 0x80)
    shift = np.uint64(7)
    while idx.size:
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
        b = a[p[idx] + n[idx]].astype(np.uint64)
        val[idx] |= (b & _U7F) << shift
        n[idx] += 1
        idx = idx[b >= 0x80]
        shift += np.uint64(7)
    return ((val >> _U1) ^ (np.uint64(0) - (val & _U1))).view(np.int64), p + n


def _headers_end(data: bytes, pos: int, count: int) -> int:
    """Where ``count`` headers starting at ``pos`` end (kafka-python's own checks)."""
    for _ in range(count):
        key_len, pos = decode_varint(data, pos)
        if key_len < 0:
            raise CorruptRecordError(f"Invalid negative header key size {key_len}")
        pos += key_len
        value_len, pos = decode_varint(data, pos)
        pos += max(value_len, 0)
    return pos


def _records(data: bytes, regions: list[tuple[int, int, int]]) -> tuple[list[int], list[int]]:
    """Follow the length varints: the start (after the length) and length of every record.

    ``regions``: (start, end, record count) of each batch's records in ``data``."""
    starts: list[int] = []
    lengths: list[int] = []
    add_start, add_length = starts.append, lengths.append
    for pos, end, count in regions:
        for _ in range(count):
            b = data[pos]
            if b < 0x80:  # lengths < 64
                pos += 1
                length = (b >> 1) ^ -(b & 1)
            elif (c := data[pos + 1]) < 0x80:  # lengths < 8192: the usual case
                v = (b & 0x7F) | (c << 7)
                pos += 2
                length = (v >> 1) ^ -(v & 1)
            else:
                length, pos = decode_varint(data, pos)
            add_start(pos)
            add_length(length)
            pos += length
        if pos != end:
            raise CorruptRecordError(f"{end - pos} unconsumed bytes after all records consumed")
    return starts, lengths


def _columns(data: bytes, starts: list[int], lengths: list[int]) -> tuple[np.ndarray, list]:
    """Offset deltas and values of the records at ``starts`` (positions after their length)."""
    a = np.frombuffer(data, np.uint8)
    s = np.array(starts, np.int64)
    e = s + np.array(lengths, np.int64)
    if (e < s).any():
        raise CorruptRecordError("Found invalid record structure: negative record length")
    _, p = _varints(a, s + 1)  # attributes (int8), then the timestamp delta
    offset_delta, p = _varints(a, p)
    key_len, p = _varints(a, p)
    p = p + np.maximum(key_len, 0)
    value_len, p = _varints(a, p)
    value_end = p + np.maximum(value_len, 0)
    header_count, after = _varints(a, value_end)
    if (key_len < -1).any() or (value_len < -1).any() or (header_count < 0).any():
        raise CorruptRecordError("Found invalid record structure: negative key, value or header count")
    ends = after
    with_headers = np.flatnonzero(header_count)
    if with_headers.size:
        ends = after.copy()
        for i in with_headers.tolist():
            ends[i] = _headers_end(data, int(after[i]), int(header_count[i]))
    bad = np.flatnonzero(ends != e)
    if bad.size:
        i = int(bad[0])
        raise CorruptRecordError(
            f"Invalid record size: expected to read {lengths[i]} bytes in record payload, "
            f"but instead read {int(ends[i]) - starts[i]}"
        )
    values = list(map(data.__getitem__, map(slice, p.tolist(), value_end.tolist())))
    for i in np.flatnonzero(value_len < 0).tolist():
        values[i] = None
    return offset_delta, values


#: Record bytes decoded together: a fetch can hold 16 MB, which is slower to walk at once
#: than in pieces that stay in the CPU's cache (a third faster here).
_CHUNK = 1 << 19


def _decode_chunks(parts: list, regions: list[tuple[int, int, int]]) -> tuple[np.ndarray, list, list[int]]:
    """Offset deltas, values and lengths of every record, a few batches at a time."""
    deltas, values, lengths = [], [], []
    i = 0
    while i < len(parts):
        j, size = i + 1, len(parts[i])
        while j < len(parts) and size + len(parts[j]) <= _CHUNK:
            size += len(parts[j])
            j += 1
        data = b"".join(parts[i:j])
        base = regions[i][0]
        starts, lens = _records(data, [(a - base, b - base, n) for a, b, n in regions[i:j]])
        d, v = _columns(data, starts, lens)
        deltas.append(d)
        values += v
        lengths += lens
        i = j
    return np.concatenate(deltas), values, lengths


def decode_fetch(raw: bytes, fetch_offset: int, check_crcs: bool) -> Decoded:
    """Decode one partition's fetched bytes; raises :class:`LegacyFormat` for v0/v1 batches."""
    out = Decoded()
    parts: list = []
    regions: list[tuple[int, int, int]] = []
    bases: list[int] = []
    epochs: list[int] = []
    at = 0
    records = _MemoryRecords(raw)
    try:
        while (batch := records.next_batch()) is not None:
            if batch.magic < 2:
                raise LegacyFormat
            if check_crcs and not batch.validate_crc():
                raise CorruptRecordError(f"Record batch at offset {batch.base_offset} failed crc check")
            out.last_epoch = batch.leader_epoch
            next_offset = batch.next_offset
            if not batch.is_control_batch:  # transaction markers: never returned
                batch._maybe_uncompress()
                body = memoryview(batch._buffer)[batch._pos :]
                parts.append(body)
                regions.append((at, at + len(body), batch.records_count))
                bases.append(batch.base_offset)
                epochs.append(batch.leader_epoch)
                at += len(body)
            out.next_offset = next_offset
    except CorruptRecordError as exc:
        out.error = exc
    except (ValueError, IndexError) as exc:
        out.error = CorruptRecordError(f"Found invalid record structure: {exc!r}")
    if not regions:
        return out
    try:
        deltas, values, lengths = _decode_chunks(parts, regions)
    except (CorruptRecordError, ValueError, IndexError) as exc:
        # Which batch is bad is not known here: decode batch by batch to keep the good ones.
        if len(regions) > 1:
            return _batch_by_batch(raw, fetch_offset, check_crcs, exc)
        out.error = (
            exc
            if isinstance(exc, CorruptRecordError)
            else CorruptRecordError(f"Found invalid record structure: {exc!r}")
        )
        out.next_offset = None
        return out
    counts = [r[2] for r in regions]
    offsets = np.repeat(np.array(bases, np.int64), counts) + deltas
    batch_epochs = np.repeat(np.array(epochs, np.int64), counts)
    sizes = np.array(lengths, np.int64)
    keep = offsets >= fetch_offset  # a fetch from mid-batch returns the whole batch
    if not keep.all():
        offsets, batch_epochs, sizes = offsets[keep], batch_epochs[keep], sizes[keep]
        values = list(itertools.compress(values, keep.tolist()))
    out.offsets, out.values, out.epochs, out.sizes = offsets, values, batch_epochs, sizes
    return out


def _batch_by_batch(raw: bytes, fetch_offset: int, check_crcs: bool, first_error: Exception) -> Decoded:
    """A fetch with a corrupt batch: the batches before it, then its error (kafka-python's order)."""
    records = _MemoryRecords(raw)
    good: list[Decoded] = []
    error: Exception = first_error
    while (batch := records.next_batch()) is not None:
        one = decode_fetch(bytes(batch._buffer), fetch_offset, check_crcs)
        if one.error is not None:
            error = one.error
            break
        good.append(one)
    out = Decoded()
    out.error = error
    if good:
        out.offsets = np.concatenate([g.offsets for g in good])
        out.epochs = np.concatenate([g.epochs for g in good])
        out.sizes = np.concatenate([g.sizes for g in good])
        out.values = [v for g in good for v in g.values]
        out.last_epoch = good[-1].last_epoch
        out.next_offset = good[-1].next_offset
    return out


def compatible() -> str | None:
    """``None`` when the installed kafka-python has the iterator this replaces, else why not."""
    if _IMPORT_ERROR is not None:
        return f"kafka-python internals moved: {_IMPORT_ERROR}"
    params = list(inspect.signature(_BASE.__init__).parameters)
    if params != _PARAMS:
        return f"kafka-python's PartitionRecords takes {params}"
    for cls, names in ((_DefaultRecordBatch, ("_buffer", "_pos")), (_MemoryRecords, ("_buffer",))):
        if not all(n in getattr(cls, "__slots__", ()) for n in names):
            return f"kafka-python's {cls.__name__} has no {names}"
    for name in ("take", "drain", "_maybe_raise_next_inline_exception"):
        if not hasattr(_BASE, name):
            return f"kafka-python's PartitionRecords has no {name}()"
    return None


class ColumnarPartitionRecords(_BASE):
    """kafka-python's ``PartitionRecords`` with column-wise decoding; ``take`` gives (offset, value)."""

    def __init__(
        self,
        fetch_offset,
        tp,
        records,
        key_deserializer=None,
        value_deserializer=None,
        check_crcs=True,
        isolation_level=0,
        aborted_transactions=None,
        metric_aggregator=None,
        on_drain=lambda x: None,
    ):
        raw = records._buffer
        super().__init__(
            fetch_offset,
            tp,
            records,
            key_deserializer,
            value_deserializer,
            check_crcs,
            isolation_level,
            aborted_transactions,
            metric_aggregator,
            on_drain,
        )
        self._decoded = None
        self._at = 0
        if isolation_level != _Isolation.READ_UNCOMMITTED:
            return  # aborted transactions are filtered by kafka-python's own iterator
        try:
            self._decoded = decode_fetch(raw, fetch_offset, check_crcs)
        except LegacyFormat:
            return

    def take(self, n=None):
        d = self._decoded
        if d is None:
            return list(map(_OFFSET_VALUE, super().take(n)))
        self._maybe_raise_next_inline_exception()
        if self.record_iterator is None:
            return []
        left = len(d.values) - self._at
        if not left and d.error is not None:
            error, d.error = d.error, None
            raise error
        i, j = self._at, self._at + (left if n is None else min(n, left))
        self._at = j
        if j > i:
            self.next_fetch_offset = int(d.offsets[j - 1]) + 1
            self.leader_epoch = int(d.epochs[j - 1])
            self.records_read += j - i
            self.bytes_read += int(d.sizes[i:j].sum())
        taken = list(zip(d.offsets[i:j].tolist(), d.values[i:j], strict=True))
        if j == len(d.values):
            if d.error is not None:  # raised by the next take, after these records
                self._next_inline_exception, d.error = d.error, None
            else:  # all taken: past trailing control batches too, as kafka-python does
                if d.next_offset is not None:
                    self.next_fetch_offset = d.next_offset
                self.leader_epoch = d.last_epoch
                self.drain()
        return taken


def install(consumer) -> bool:
    """Decode ``consumer``'s fetches column-wise; its ``poll()`` then gives (offset, value) tuples.

    Returns ``False`` (and logs why) when this kafka-python's internals differ from
    the ones this module was written against: the consumer then keeps its own
    decoding and gives ``ConsumerRecord`` objects, which stays correct, only slower."""
    why = compatible()
    fetcher = getattr(consumer, "_fetcher", None)
    if why is None and fetcher is None:
        why = "KafkaConsumer has no _fetcher"
    if why is not None:
        log.warning(
            "kafka-python records are decoded by kafka-python itself (slower): %s",
            why,
            extra={"event": "kafka_columnar_decoding_off", "reason": why},
        )
        return False
    fetcher.PartitionRecords = ColumnarPartitionRecords
    return True
