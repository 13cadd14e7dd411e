"""Column-wise record decoding (streaming.kafka_records) against kafka-python's own iterator.

Batches are built with kafka-python's own record builder, so both decoders read
exactly the bytes a broker would send; a broker's fetch can also end in a
partial batch, start mid-batch, hold transaction markers (control batches) or a
corrupt batch. The real consumer path is covered against a real broker in
tests/test_kafka.py (every daemon there decodes this way).
"""

from __future__ import annotations

import struct

import hypothesis.strategies as st
import pytest
from fairwatch.streaming import kafka_records
from fairwatch.streaming.kafka_records import ColumnarPartitionRecords, decode_fetch
from hypothesis import HealthCheck, given, settings
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.protocol.consumer.offsets import IsolationLevel
from kafka.record import MemoryRecords, MemoryRecordsBuilder
from kafka.record.default_records import DefaultRecordBase
from kafka.record.util import calc_crc32c
from kafka.structs import TopicPartition

TP = TopicPartition("fairness.decisions", 0)
ATTRS, CRC = DefaultRecordBase.ATTRIBUTES_OFFSET, DefaultRecordBase.CRC_OFFSET

record = st.tuples(
    st.one_of(st.none(), st.binary(max_size=20)),  # key
    st.one_of(st.none(), st.binary(max_size=300), st.integers(8100, 8300).map(b"v".__mul__)),  # value (3-byte lengths)
    st.lists(st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=12))), max_size=2),
    st.integers(min_value=0, max_value=2**40),  # timestamp
    st.integers(min_value=0, max_value=3),  # offsets skipped before (compaction)
)
batch = st.tuples(
    st.lists(record, min_size=1, max_size=25),
    st.sampled_from([0, 1]),  # compression: none, gzip
    st.integers(min_value=-1, max_value=5),  # leader epoch
    st.booleans(),  # control batch (a transaction marker)
)


def build(batches, first_offset: int = 0) -> bytes:
    out, offset = [], first_offset
    for records, codec, epoch, control in batches:
        b = MemoryRecordsBuilder(2, codec, batch_size=1 << 30)  # offsets as deltas, as a producer writes
        for key, value, headers, ts, skip in records:
            b.skip(skip)
            assert b.append(ts, key, value, headers) is not None
        b.close()
        raw = bytearray(b.buffer())
        struct.pack_into(">q", raw, 0, offset)  # the base offset is the broker's, outside the CRC
        offset += b.next_offset()
        struct.pack_into(">i", raw, 12, epoch)  # the leader epoch is the broker's, outside the CRC
        if control:
            attrs = struct.unpack_from(">h", raw, ATTRS)[0] | DefaultRecordBase.CONTROL_MASK
            struct.pack_into(">h", raw, ATTRS, attrs)
            struct.pack_into(">I", raw, CRC, calc_crc32c(memoryview(raw)[ATTRS:]))
        out.append(bytes(raw))
    return b"".join(out)


def drain(cls, raw: bytes, fetch_offset: int, n: int):
    """What kafka-python's fetcher sees: records per take, the position after each, the epoch."""
    part = cls(fetch_offset, TP, MemoryRecords(raw), None, None, True, IsolationLevel.READ_UNCOMMITTED)
    takes, error = [], None
    for _ in range(10_000):
        if not part:
            break
        try:
            got = part.take(n)
        except CorruptRecordError as exc:
            error = str(exc)
            break
        recs = [(r.offset, r.value) if hasattr(r, "offset") else r for r in got]
        if recs:
            takes.append((recs, part.next_fetch_offset))
    return takes, part.next_fetch_offset, part.leader_epoch, error


def same(raw: bytes, fetch_offset: int, n: int) -> None:
    want, want_pos, want_epoch, want_error = drain(Fetcher.PartitionRecords, raw, fetch_offset, n)
    got, got_pos, got_epoch, got_error = drain(ColumnarPartitionRecords, raw, fetch_offset, n)
    assert [r for t, _ in got for r in t] == [r for t, _ in want for r in t]
    assert [len(t) for t, _ in got] == [len(t) for t, _ in want]
    # Each take ends at the same position; only after the last one may ours already be past
    # trailing control batches (kafka-python gets there one empty take later).
    assert [p for _, p in got[:-1]] == [p for _, p in want[:-1]]
    assert (got_error is None) == (want_error is None)
    if want_error is None:
        assert (got_pos, got_epoch) == (want_pos, want_epoch)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    batches=st.lists(batch, min_size=1, max_size=5),
    first=st.integers(min_value=0, max_value=2**40),
    start=st.floats(min_value=0, max_value=1),
    n=st.integers(min_value=1, max_value=60),
    cut=st.one_of(st.none(), st.integers(min_value=1, max_value=400)),
)
def test_columnar_decoding_equals_kafka_python(batches, first, start, n, cut):
    raw = build(batches, first)
    if cut is not None:  # a fetch response may end inside a batch
        raw = raw[: max(1, len(raw) - cut)]
    last = first + sum(len(r) + sum(x[4] for x in r) for r, *_ in batches)
    same(raw, first + int(start * (last - first)), n)  # fetches may start mid-batch


def test_corrupt_batch_is_raised_after_the_good_ones():
    good = build([([(None, b"a", [], 1, 0), (b"k", b"b", [], 2, 0)], 0, 1, False)])
    bad = bytearray(build([([(None, b"c", [], 3, 0)], 0, 1, False)], first_offset=2))
    bad[-3] ^= 0xFF  # inside the record: the CRC no longer matches
    raw = good + bytes(bad)
    want = drain(Fetcher.PartitionRecords, raw, 0, 100)
    got = drain(ColumnarPartitionRecords, raw, 0, 100)
    assert got[0] == want[0] == [([(0, b"a"), (1, b"b")], 2)]
    assert "crc" in got[3] and "crc" in want[3]


def test_structure_errors_without_crc_checks_are_corrupt_record_errors():
    raw = bytearray(build([([(None, b"abcdef", [], 1, 0)], 0, 0, False)]))
    raw[-8] = 0x7F  # the value length: longer than the record
    d = decode_fetch(bytes(raw), 0, check_crcs=False)
    assert d.values == [] and isinstance(d.error, CorruptRecordError)


def test_read_committed_and_legacy_formats_use_kafka_pythons_iterator():
    raw = build([([(None, b"x", [], 1, 0), (None, None, [("h", b"v")], 2, 0)], 0, 0, False)])
    part = ColumnarPartitionRecords(0, TP, MemoryRecords(raw), None, None, True, IsolationLevel.READ_COMMITTED)
    assert part._decoded is None and part.take(10) == [(0, b"x"), (1, None)]
    legacy = MemoryRecordsBuilder(1, 0, batch_size=1 << 20, offset=7)
    legacy.append(5, None, b"old", None)
    legacy.close()
    part = ColumnarPartitionRecords(7, TP, MemoryRecords(bytes(legacy.buffer())), None, None, True, 0)
    assert part._decoded is None and part.take(10) == [(7, b"old")]


def test_installs_into_the_installed_kafka_python():
    # The daemon's throughput rests on this: a kafka-python upgrade that moves these
    # internals must fail here, not silently fall back to the slow decoder.
    assert kafka_records.compatible() is None


def test_consumer_poll_gives_offset_value_tuples(kafka_bootstrap):
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"records-{id(object())}"
    prod = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5, compression_type="gzip")
    values = [b"v%d" % i for i in range(2_000)] + [None]
    for v in values:
        prod.send(topic, v, key=b"k", headers=[("h", b"1")] if v == b"v7" else [])
    prod.flush()
    prod.close()
    c = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=None, auto_offset_reset="earliest")
    assert kafka_records.install(c)
    got = []
    try:
        for _ in range(100):
            for recs in c.poll(timeout_ms=500).values():
                got += recs
            if len(got) >= len(values):
                break
    finally:
        c.close()
    assert got == list(enumerate(values))


@pytest.mark.parametrize("values", [[b"x" * 70_000], [b""] * 3])
def test_long_and_empty_values(values):
    raw = build([([(None, v, [], 1, 0) for v in values], 0, 0, False)])
    same(raw, 0, 10)
