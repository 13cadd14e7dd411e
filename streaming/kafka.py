"""Kafka source and dead-letter sink on kafka-python (confluent-kafka optional).

The source knows nothing about fairness: it subscribes to the decision and
outcome topics in one consumer group, polls raw bytes (no value deserializer:
a bad message must not fail inside ``poll()``), groups records by partition
index, and leaves offsets alone until told to commit exactly the offsets a
durable checkpoint contains. Auto-commit is off and ``close()`` never commits.

Partition index ``p`` of both topics belongs together: decisions and outcomes
are keyed by model, so with equal partition counts one model's events land on
the same index of both topics, and the range assignor gives both to one member.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter

import orjson
from fairwatch.streaming import kafka_loop, kafka_records
from fairwatch.streaming.events import Rejection

from fairwatch.errors import FairwatchError

# A polled record's value and offset, for C-level loops: (offset, value) tuples when the
# consumer decodes column-wise (streaming.kafka_records), else kafka-python's ConsumerRecord.
_COLUMNAR = itemgetter(1), itemgetter(0)
_RECORD = attrgetter("value"), attrgetter("offset")

__all__ = [
    "DECISIONS_TOPIC",
    "OUTCOMES_TOPIC",
    "DEADLETTER_TOPIC",
    "PartitionBatch",
    "RecordMeta",
    "KafkaSource",
    "DeadLetterProducer",
    "DeadLetterError",
    "DEAD_LETTER_MAX_BYTES",
    "dead_letter_record",
]

log = logging.getLogger("fairwatch.streaming.kafka")

DECISIONS_TOPIC = "fairness.decisions"
OUTCOMES_TOPIC = "fairness.outcomes"
DEADLETTER_TOPIC = "fairness.deadletter"


class DeadLetterError(FairwatchError, RuntimeError):
    """The dead-letter topic did not acknowledge: the consumer must not advance."""


class RecordMeta(Sequence):
    """``(partition, offset)`` of each record of a run, made only when asked for.

    The engine asks only for rejected events' positions: a clean stream builds no tuples.
    """

    __slots__ = ("partition", "offsets")

    def __init__(self, partition: int, offsets: list[int]):
        self.partition, self.offsets = partition, offsets

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [(self.partition, o) for o in self.offsets[j]]
        return self.partition, self.offsets[j]

    def __repr__(self) -> str:
        return f"RecordMeta(partition={self.partition}, offsets={self.offsets!r})"


@dataclass
class PartitionBatch:
    """Records of one partition index from one poll, in offset order per topic."""

    partition: int
    decisions: list[bytes] = field(default_factory=list)
    decision_offsets: list[int] = field(default_factory=list)
    outcomes: list[bytes] = field(default_factory=list)
    outcome_offsets: list[int] = field(default_factory=list)
    next_offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" → next offset

    @property
    def decision_meta(self) -> RecordMeta:
        return RecordMeta(self.partition, self.decision_offsets)

    @property
    def outcome_meta(self) -> RecordMeta:
        return RecordMeta(self.partition, self.outcome_offsets)

    def add(self, topic: str, values: list, offsets: list[int], *, decisions: bool) -> None:
        """Append a run of this partition's records of ``topic``, in offset order.

        ``None`` values (tombstones) become empty events: rejected as malformed and dead-lettered.
        """
        if None in values:
            values = [v if v is not None else b"" for v in values]
        if decisions:
            self.decisions += values
            self.decision_offsets += offsets
        else:
            self.outcomes += values
            self.outcome_offsets += offsets
        self.next_offsets[tp_key(topic, self.partition)] = offsets[-1] + 1


def tp_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


#: Largest dead-letter value written: under kafka-python's default ``max_request_size``
#: (1 MiB) and the broker's default ``message.max.bytes`` (1 MiB + 12), with room for
#: the key, the header and the record batch around it.
DEAD_LETTER_MAX_BYTES = 1_000_000
#: A dead letter the broker still refuses as too large (a topic with a lower
#: ``max.message.bytes``) is written once more with a prefix this small.
DEAD_LETTER_FALLBACK_BYTES = 16 * 1024
MAX_MESSAGE_CHARS = 2_000  # the rejection's message, cut (it may quote the bad value)


def dead_letter_record(r: Rejection, *, max_bytes: int = DEAD_LETTER_MAX_BYTES) -> bytes:
    """The dead-letter message: reason, message, where it came from, and the original bytes.

    It always fits in ``max_bytes``: an original too large keeps its first bytes
    (``truncated: true``); ``raw_length`` and ``raw_sha256`` always describe the whole.
    """
    return _letter(r, max_bytes)[0]


def _letter(r: Rejection, max_bytes: int) -> tuple[bytes, bool]:
    letter = {
        "reason": r.reason,
        "message": r.message[:MAX_MESSAGE_CHARS],
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "raw_length": len(r.raw),
        "raw_sha256": hashlib.sha256(r.raw).hexdigest(),
        "truncated": False,
        "raw_base64": "",
    }
    room = max_bytes - len(orjson.dumps(letter)) - len(',"truncated":true')  # base64 needs no escapes
    raw = r.raw
    if (len(raw) + 2) // 3 * 4 > room:
        raw = raw[: max(0, room) // 4 * 3]
        letter["truncated"] = True
    letter["raw_base64"] = base64.b64encode(raw).decode()
    return orjson.dumps(letter), letter["truncated"]


class KafkaSource:
    """Consumer-group source with rebalance hooks and explicit, checkpoint-driven commits."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group_id: str,
        on_assign: Callable[[list[int]], dict[str, int]],
        on_revoke: Callable[[list[int]], None],
        on_lost: Callable[[list[int]], None],
        decisions_topic: str = DECISIONS_TOPIC,
        outcomes_topic: str = OUTCOMES_TOPIC,
        client_options: dict | None = None,
        max_poll_records: int = 10_000,
    ):
        from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

        kafka_loop.install()  # kafka-python's IO thread must wake for tasks queued from this thread
        self._tp = TopicPartition
        self.topics = (decisions_topic, outcomes_topic)
        self.decisions_topic, self.outcomes_topic = decisions_topic, outcomes_topic
        self.on_assign, self.on_revoke, self.on_lost = on_assign, on_revoke, on_lost
        options = {
            "bootstrap_servers": bootstrap_servers,
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": max_poll_records,
            "fetch_max_bytes": 64 * 1024 * 1024,
            "max_partition_fetch_bytes": 16 * 1024 * 1024,
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 3_000,
            "request_timeout_ms": 30_000,
            "reconnect_backoff_max_ms": 5_000,
            **(client_options or {}),
        }
        self.consumer = KafkaConsumer(**options)
        self._value, self._offset = _COLUMNAR if kafka_records.install(self.consumer) else _RECORD
        source = self

        class Listener(ConsumerRebalanceListener):
            # Runs inside poll(), beside the heartbeat: keep it short (checkpoint + seek).
            def on_partitions_revoked(self, revoked):
                parts = sorted({tp.partition for tp in revoked})
                if parts:
                    source.on_revoke(parts)

            def on_partitions_assigned(self, assigned):
                parts = sorted({tp.partition for tp in assigned})
                offsets = source.on_assign(parts) if parts else {}
                for tp in assigned:
                    nxt = offsets.get(tp_key(tp.topic, tp.partition))
                    if nxt is not None:
                        source.consumer.seek(tp, nxt)
                    else:
                        source.consumer.seek_to_beginning(tp)

            def on_partitions_lost(self, lost):
                parts = sorted({tp.partition for tp in lost})
                if parts:
                    source.on_lost(parts)  # never commits: the partitions are someone else's now

        self.consumer.subscribe(list(self.topics), listener=Listener())

    def poll(self, timeout_ms: int = 500) -> dict[int, PartitionBatch]:
        records = self.consumer.poll(timeout_ms=timeout_ms)
        out: dict[int, PartitionBatch] = {}
        for tp, recs in records.items():
            if not recs:
                continue
            b = out.get(tp.partition)
            if b is None:
                b = out[tp.partition] = PartitionBatch(tp.partition)
            b.add(
                tp.topic,
                list(map(self._value, recs)),
                list(map(self._offset, recs)),
                decisions=tp.topic == self.decisions_topic,
            )
        return out

    def commit(self, offsets: dict[str, int], *, wait: bool = True) -> None:
        """Commit exactly these next offsets (those of a durable checkpoint).

        Inside a rebalance callback (kafka-python's IO thread) pass ``wait=False``:
        a blocking commit there would deadlock. Restarts seek to the checkpoint's
        own offsets, so a lost asynchronous commit loses nothing.
        """
        from kafka.structs import OffsetAndMetadata

        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        to_commit = {}
        for key, nxt in offsets.items():
            topic, _, part = key.rpartition(":")
            if (topic, int(part)) in assigned:
                to_commit[self._tp(topic, int(part))] = OffsetAndMetadata(nxt, "", -1)
        if not to_commit:
            return
        if wait:
            self.consumer.commit(offsets=to_commit)
        else:
            self.consumer.commit_async(offsets=to_commit)

    def assigned(self) -> list[int]:
        return sorted({tp.partition for tp in self.consumer.assignment()})

    def joined(self) -> bool:
        """A stable member of the group (a member with no partitions is one too: more replicas than partitions)."""
        coordinator = getattr(self.consumer, "_coordinator", None)
        stable = getattr(coordinator, "stable", None)
        return bool(stable()) if callable(stable) else bool(self.consumer.assignment())

    def lag(
        self, positions: dict[str, int], timeout_s: float = 5.0, *, cached: bool = False
    ) -> dict[tuple[str, int], int]:
        """Messages behind the end of each assigned partition; raises when the broker does not answer.

        ``cached``: from the high watermarks the last fetch responses carried (no round
        trip), for when records just arrived, which proves the broker answers. A round
        trip waits behind the consumer's in-flight fetch (a broker answers one request
        per connection at a time: up to ``fetch_max_wait_ms``), time the loop would
        otherwise spend applying records.
        """
        tps = list(self.consumer.assignment())
        if not tps:
            return {}
        ends = {tp: self.consumer.highwater(tp) for tp in tps} if cached else {}
        if not ends or None in ends.values():
            ends = self.consumer.end_offsets(tps, timeout_ms=int(timeout_s * 1000))
        return {
            (tp.topic, tp.partition): max(0, end - positions.get(tp_key(tp.topic, tp.partition), 0))
            for tp, end in ends.items()
        }

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        except Exception:  # closing a consumer whose broker is gone must not hide the real exit
            log.warning("consumer close failed", exc_info=True)


def _permanent_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """kafka-python's errors that no retry cures: (record too large, topic refused)."""
    from kafka import errors

    too_large = (errors.MessageSizeTooLargeError, errors.RecordListTooLargeError)
    refused = (
        errors.InvalidRecordError,
        errors.CorruptRecordError,
        errors.InvalidTopicError,
        errors.TopicAuthorizationFailedError,
        errors.ClusterAuthorizationFailedError,
    )
    return too_large, refused


def _error_name(exc: BaseException) -> str:
    """``MessageSizeTooLargeError`` → ``message_size_too_large`` (a bounded label value)."""
    name = type(exc).__name__.removesuffix("Error")
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class DeadLetterProducer:
    """Writes rejected events to the dead-letter topic and waits for the acknowledgement.

    Only an unreachable topic (timeouts, no leader, broker away: retriable errors)
    raises :class:`DeadLetterError`, which holds the partition back. A letter the
    topic can never take (record too large even truncated, invalid topic, not
    authorized) is counted ``undeliverable`` under the producer's error, logged with
    its topic, partition and offset, and passed.

    ``written`` holds the keys (``topic:partition:offset`` of the original) of letters
    already settled — acknowledged or undeliverable — so that a retry of the same
    records after a stream failure does not write them again; the daemon keeps it
    across reconnects and prunes it behind committed offsets. After a crash, letters
    since the last checkpoint are written again under the same key: a reader
    deduplicates by key (the topic can be compacted).
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str = DEADLETTER_TOPIC,
        client_options: dict | None = None,
        timeout_s: float = 10.0,
        written: set[str] | None = None,
        counts: Counter | None = None,
        max_bytes: int = DEAD_LETTER_MAX_BYTES,
    ):
        kafka_loop.install()
        security = {k: v for k, v in (client_options or {}).items() if k.startswith(("security_", "sasl_", "ssl_"))}
        max_request = int((client_options or {}).get("max_request_size", 1_048_576))
        self._options = {
            "bootstrap_servers": bootstrap_servers,
            "acks": "all",
            "retries": 5,
            "linger_ms": 5,
            **security,
        }
        self.producer = self._new_producer()
        self.topic = topic
        self.timeout_s = timeout_s
        self.max_bytes = min(max_bytes, max_request - 4096)
        self.written = set() if written is None else written
        self.sent = 0
        # (source topic, result, reason) → letters; result: written, truncated or undeliverable
        self.counts: Counter = Counter() if counts is None else counts

    def _new_producer(self):
        from kafka import KafkaProducer

        return KafkaProducer(**self._options)

    def send(self, rejections: list[Rejection]) -> None:
        todo = [(r, f"{r.topic}:{r.partition}:{r.offset}") for r in rejections]
        todo = [(r, key) for r, key in todo if key not in self.written]
        if not todo:
            return
        deadline = time.monotonic() + self.timeout_s
        sent = [(r, key, *self._send(r, key, self.max_bytes)) for r, key in todo]
        too_large, refused = _permanent_errors()
        for r, key, producer, future, truncated in sent:
            try:
                try:
                    self._wait(future, deadline)
                except too_large:
                    if self.max_bytes <= DEAD_LETTER_FALLBACK_BYTES:
                        raise
                    if producer is self.producer and not isinstance(future, BaseException):
                        # the broker refused it: kafka-python takes that as fatal for the whole producer
                        self._renew()
                    _, future, truncated = self._send(r, key, DEAD_LETTER_FALLBACK_BYTES)  # the topic takes less
                    self._wait(future, deadline)
            except too_large + refused as exc:
                self._undeliverable(r, key, exc)
                if not isinstance(exc, too_large) or isinstance(future, BaseException):
                    continue
                self._renew()  # refused by the broker: the producer is dead for every later letter
                continue
            except Exception as exc:
                raise DeadLetterError(f"dead-letter topic {self.topic!r} did not acknowledge: {exc!r}") from exc
            self.written.add(key)
            self.counts[(r.topic, "truncated" if truncated else "written", r.reason)] += 1
            self.sent += 1

    def _renew(self) -> None:
        old, self.producer = self.producer, self._new_producer()
        try:
            old.close(timeout=0)
        except Exception:
            log.warning("dead-letter producer close failed", exc_info=True)

    def _send(self, r: Rejection, key: str, max_bytes: int) -> tuple:
        """(producer, future or the exception ``send()`` raised at once, truncated?)."""
        value, truncated = _letter(r, max_bytes)
        producer = self.producer
        try:
            future = producer.send(self.topic, value=value, key=key.encode(), headers=[("reason", r.reason.encode())])
        except Exception as exc:  # kafka-python checks the size before queueing
            return producer, exc, truncated
        return producer, future, truncated

    def _wait(self, future, deadline: float) -> None:
        if isinstance(future, BaseException):
            raise future
        future.get(timeout=max(0.1, deadline - time.monotonic()))

    def _undeliverable(self, r: Rejection, key: str, exc: BaseException) -> None:
        error = _error_name(exc)
        log.error(
            "dead letter undeliverable; the event is counted and passed",
            extra={"topic": r.topic, "partition": r.partition, "offset": r.offset, "reason": r.reason, "error": error},
        )
        self.written.add(key)
        self.counts[(r.topic, "undeliverable", error)] += 1

    def close(self) -> None:
        try:
            self.producer.close(timeout=5)
        except Exception:
            log.warning("dead-letter producer close failed", exc_info=True)
