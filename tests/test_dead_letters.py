"""Dead letters that always fit, against a real broker with default limits.

A 900 KB decision is accepted by the broker (default ``message.max.bytes`` ≈ 1 MB) and
rejected by the decoder as ``oversized``; its dead letter (base64 of the original plus
metadata) would exceed the producer's ``max.request.size``. It must be written truncated,
with the original length and SHA-256, and the stream must go on for every model.
"""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest
from fairwatch.streaming.events import Rejection
from fairwatch.streaming.kafka import DEAD_LETTER_MAX_BYTES, dead_letter_record

from tests.test_kafka import (
    DaemonProcess,
    Topics,
    assert_no_message_stopped_the_stream,
    events_total,
    make_events,
    produce,
)

pytestmark = pytest.mark.integration

BIG = b'{"schema":"decision/v1","pad":"' + b"x" * 900_000 + b'"}'


def read_dead_letters(bootstrap: str, topic: str) -> list:
    from kafka import KafkaConsumer

    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        return [r for r in c]
    finally:
        c.close()


def test_a_small_dead_letter_keeps_the_original_bytes():
    r = Rejection("malformed_json", "bad", b"{x", "t", 0, 5)
    letter = orjson.loads(dead_letter_record(r))
    assert base64.b64decode(letter["raw_base64"]) == b"{x"
    assert letter["truncated"] is False and letter["raw_length"] == 2
    assert letter["raw_sha256"] == hashlib.sha256(b"{x").hexdigest()


def test_a_dead_letter_larger_than_the_limit_keeps_a_bounded_prefix_length_and_digest():
    r = Rejection("oversized", "m" * 50_000, BIG, "t", 2, 7)
    record = dead_letter_record(r, max_bytes=100_000)
    assert len(record) <= 100_000
    letter = orjson.loads(record)
    prefix = base64.b64decode(letter["raw_base64"])
    assert letter["truncated"] is True and BIG.startswith(prefix) and 50_000 < len(prefix) < len(BIG)
    assert letter["raw_length"] == len(BIG) and letter["raw_sha256"] == hashlib.sha256(BIG).hexdigest()
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("t", 2, 7)
    assert len(dead_letter_record(r)) <= DEAD_LETTER_MAX_BYTES


def test_a_900kb_poison_pill_is_dead_lettered_truncated_and_the_stream_goes_on(kafka_bootstrap, tmp_path):
    topics = Topics(kafka_bootstrap)
    events, key = make_events(seed=61, hours=1.0)
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    try:
        for i in range(3):  # three bad messages among the good ones, on the model's partition
            p.send(topics.decisions, key=key, value=BIG.replace(b"x", str(i).encode(), 1))
        p.flush()
    finally:
        p.close()
    produce(kafka_bootstrap, topics, events, key)
    n_dec = sum(1 for o, _ in events if not o)
    d = DaemonProcess(kafka_bootstrap, topics, f"sqlite:///{tmp_path}/state.db", tmp_path).start()
    try:
        live = d.wait_for(
            lambda m: events_total(m, topics.decisions) == n_dec and events_total(m, topics.decisions, "invalid") == 3,
            timeout=90,
            what="the good events after three 900 KB poison pills",
        )
        assert d.get("/readyz")[0] == 200
        letters = {dict(labels)["result"]: v for (n, labels), v in live.items() if n == "fairwatch_dead_letters_total"}
        assert letters == {"truncated": 3}
    finally:
        assert d.stop() == 0
    assert_no_message_stopped_the_stream(d.log.read_text())
    letters = read_dead_letters(kafka_bootstrap, topics.deadletter)
    assert len(letters) == 3  # once each: no retry wrote them again
    assert len({r.key for r in letters}) == 3
    for r in letters:
        letter = orjson.loads(r.value)
        assert letter["reason"] == "oversized" and letter["truncated"] is True
        assert letter["raw_length"] == len(BIG)
        assert BIG[1:20] in base64.b64decode(letter["raw_base64"])
        assert r.key == f"{letter['topic']}:{letter['partition']}:{letter['offset']}".encode()


def test_the_producer_tells_a_refused_letter_from_an_unreachable_topic(kafka_bootstrap):
    from fairwatch.streaming.kafka import DeadLetterError, DeadLetterProducer

    topics = Topics(kafka_bootstrap)
    big = Rejection("oversized", "too big", BIG, topics.decisions, 0, 1)
    small = Rejection("malformed_json", "bad", b"{x", topics.decisions, 0, 2)
    written: set[str] = set()
    dl = DeadLetterProducer(bootstrap_servers=kafka_bootstrap, topic=topics.deadletter, written=written)
    try:
        dl.send([big, small])
        dl.send([big, small])  # a retry of the same records: nothing written twice
        assert dict(dl.counts) == {
            (topics.decisions, "truncated", "oversized"): 1,
            (topics.decisions, "written", "malformed_json"): 1,
        }
        assert written == {f"{topics.decisions}:0:1", f"{topics.decisions}:0:2"}
    finally:
        dl.close()
    assert len(read_dead_letters(kafka_bootstrap, topics.deadletter)) == 2
    # A topic that takes less than the producer thinks: written again with a 16 KB prefix, or,
    # when even that is refused, counted undeliverable under the broker's error and passed.
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(topics.deadletter + ".40k", 1, 1, topic_configs={"max.message.bytes": "40000"}),
                NewTopic(topics.deadletter + ".2k", 1, 1, topic_configs={"max.message.bytes": "2000"}),
            ]
        )
    finally:
        admin.close()
    for suffix, expected in ((".40k", "truncated"), (".2k", "undeliverable")):
        small_topic = DeadLetterProducer(bootstrap_servers=kafka_bootstrap, topic=topics.deadletter + suffix)
        try:
            small_topic.send([big])
            assert list(small_topic.counts) == [
                (topics.decisions, expected, "oversized" if expected == "truncated" else "message_size_too_large")
            ]
        finally:
            small_topic.close()
    # Anything else (here: a producer that can no longer send) holds the partition back.
    gone = DeadLetterProducer(bootstrap_servers=kafka_bootstrap, topic=topics.deadletter, timeout_s=2)
    try:
        gone.producer.close(timeout=1)
        with pytest.raises(DeadLetterError):
            gone.send([Rejection("malformed_json", "bad", b"{y", topics.decisions, 0, 3)])
        assert not gone.counts and not gone.written
    finally:
        gone.close()
