"""Kafka source on confluent-kafka (librdkafka): the same contract as :class:`~streaming.kafka.KafkaSource`.

For users who need more throughput (``kafka.client: confluent``; ``pip install
'fairwatch[confluent]'``). Semantics are those of the kafka-python source:

* one consumer group subscribed to the decision and outcome topics; raw bytes,
  grouped by partition index into :class:`~streaming.kafka.PartitionBatch`;
* ``enable.auto.commit`` and ``enable.auto.offset.store`` are off: the only
  commits are :meth:`ConfluentSource.commit` of exactly the offsets of a
  durable checkpoint; :meth:`ConfluentSource.close` commits nothing;
* ``on_assign(partitions)`` returns the checkpoint's next offsets; they are set
  on the ``TopicPartition`` objects and assigned inside librdkafka's rebalance
  callback (a partition without a checkpoint starts at the beginning, as with
  kafka-python: the checkpoint, not the group's committed offset, is the truth);
* ``on_revoke`` runs before the partitions are unassigned, so it may still
  commit; ``on_lost`` never commits.

librdkafka runs every callback (rebalance, error, log) inside ``consume()`` on
the calling thread, so unlike kafka-python nothing runs concurrently with the
daemon loop. ``client_options`` take kafka-python's names (translated here) or
librdkafka's dotted names unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from itertools import repeat
from operator import is_not
from typing import Any

import numpy as np
from fairwatch.streaming.kafka import DECISIONS_TOPIC, OUTCOMES_TOPIC, PartitionBatch, tp_key

__all__ = [
    "ConfluentSource",
    "OPTION_NAMES",
    "translate_options",
    "MSG_UNKNOWN_OPTION",
    "MSG_FIXED_OPTION",
]

log = logging.getLogger("fairwatch.streaming.kafka")

#: kafka-python option name → librdkafka property (values converted where the type differs).
OPTION_NAMES: dict[str, str] = {
    "client_id": "client.id",
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    "ssl_ciphers": "ssl.cipher.suites",
    "ssl_check_hostname": "ssl.endpoint.identification.algorithm",
    "group_instance_id": "group.instance.id",
    # librdkafka's consumer has no request.timeout.ms (a producer property it ignores):
    # the network request timeout of a consumer is socket.timeout.ms.
    "request_timeout_ms": "socket.timeout.ms",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "max_poll_interval_ms": "max.poll.interval.ms",
    "auto_offset_reset": "auto.offset.reset",
    "fetch_min_bytes": "fetch.min.bytes",
    "fetch_max_bytes": "fetch.max.bytes",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "connections_max_idle_ms": "connections.max.idle.ms",
    "metadata_max_age_ms": "metadata.max.age.ms",
    "receive_buffer_bytes": "socket.receive.buffer.bytes",
    "send_buffer_bytes": "socket.send.buffer.bytes",
    "isolation_level": "isolation.level",
    "check_crcs": "check.crcs",
}

#: Properties the source sets itself: overriding them would break checkpoint-driven commits.
FIXED = {
    "bootstrap.servers": "set bootstrap_servers",
    "group.id": "set group_id",
    "enable.auto.commit": "offsets are committed only behind durable checkpoints",
    "enable.auto.offset.store": "offsets are committed only behind durable checkpoints",
    "enable_auto_commit": "offsets are committed only behind durable checkpoints",
    "bootstrap_servers": "set bootstrap_servers",
    "group_id": "set group_id",
}

MSG_UNKNOWN_OPTION = (
    "kafka.options: {name!r} is not a kafka-python option the confluent client knows; "
    "use one of {valid} or a librdkafka property name (with dots, e.g. 'socket.keepalive.enable')"
)
MSG_FIXED_OPTION = "kafka.options: {name!r} cannot be set ({why})"


def _value(name: str, value: Any) -> Any:
    if name == "ssl_check_hostname":  # a bool in kafka-python, an algorithm name in librdkafka
        return "https" if value else "none"
    return value


def translate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """kafka-python-style ``client_options`` → librdkafka configuration.

    >>> translate_options({"security_protocol": "SASL_SSL", "sasl_plain_username": "u", "ssl_check_hostname": False})
    {'security.protocol': 'SASL_SSL', 'sasl.username': 'u', 'ssl.endpoint.identification.algorithm': 'none'}
    >>> translate_options({"fetch.wait.max.ms": 50})
    {'fetch.wait.max.ms': 50}
    >>> translate_options({"sasl_oauth_token_provider": object()})
    Traceback (most recent call last):
    ...
    ValueError: kafka.options: 'sasl_oauth_token_provider' is not a kafka-python option ...
    """
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name in FIXED:
            raise ValueError(MSG_FIXED_OPTION.format(name=name, why=FIXED[name]))
        if "." in name:
            out[name] = value  # librdkafka's own name
        elif name in OPTION_NAMES:
            out[OPTION_NAMES[name]] = _value(name, value)
        else:
            raise ValueError(MSG_UNKNOWN_OPTION.format(name=name, valid=sorted(OPTION_NAMES)))
    return out


class ConfluentSource:
    """Consumer-group source on librdkafka with rebalance hooks and checkpoint-driven commits."""

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
        from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

        # Message accessors for C-level loops over a consumed batch: the unbound methods
        # cost about 20 ns a call, operator.methodcaller about 100 ns (measured).
        self._error, self._topic, self._partition = Message.error, Message.topic, Message.partition
        self._value, self._offset = Message.value, Message.offset
        self._tp = TopicPartition
        self._kafka_exception = KafkaException
        self.topics = (decisions_topic, outcomes_topic)
        self.decisions_topic, self.outcomes_topic = decisions_topic, outcomes_topic
        self.on_assign, self.on_revoke, self.on_lost = on_assign, on_revoke, on_lost
        self.max_poll_records = max(1, min(int(max_poll_records), 1_000_000))  # consume() caps at 1 M
        self._fatal: Exception | None = None
        self._last_error_log: dict[int, float] = {}
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
            "socket.timeout.ms": 30_000,
            "reconnect.backoff.max.ms": 5_000,
            **translate_options(client_options or {}),
            "error_cb": self._on_error,
            "logger": log,
        }
        strategy = str(conf.get("partition.assignment.strategy", ""))
        self._incremental = "cooperative" in strategy or str(conf.get("group.protocol", "")).lower() == "consumer"
        self.consumer = Consumer(conf)
        self.consumer.subscribe(
            list(self.topics), on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    # -- rebalance callbacks: run inside consume() on the caller's thread ------------
    def _assigned(self, consumer, partitions) -> None:
        parts = sorted({tp.partition for tp in partitions})
        offsets = self.on_assign(parts) if parts else {}
        from confluent_kafka import OFFSET_BEGINNING

        for tp in partitions:
            nxt = offsets.get(tp_key(tp.topic, tp.partition))
            tp.offset = nxt if nxt is not None else OFFSET_BEGINNING
        if self._incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _revoked(self, consumer, partitions) -> None:
        parts = sorted({tp.partition for tp in partitions})
        try:
            if parts:
                self.on_revoke(parts)  # still assigned here, so its checkpoint may commit
        finally:
            if self._incremental:
                consumer.incremental_unassign(partitions)
            else:
                consumer.unassign()

    def _lost(self, consumer, partitions) -> None:
        parts = sorted({tp.partition for tp in partitions})
        try:
            if parts:
                self.on_lost(parts)  # never commits: the partitions are someone else's now
        finally:
            if self._incremental:
                consumer.incremental_unassign(partitions)
            else:
                consumer.unassign()

    def _on_error(self, err) -> None:
        if err.fatal():
            self._fatal = self._kafka_exception(err)
            log.error("kafka client fatal error", extra={"error": str(err)})
            return
        code = err.code()
        now = time.monotonic()
        if now - self._last_error_log.get(code, -1e9) >= 10.0:  # a broker away repeats this often
            self._last_error_log[code] = now
            log.warning("kafka client error", extra={"error": str(err)})

    # -- the contract --------------------------------------------------------------
    def poll(self, timeout_ms: int = 500) -> dict[int, PartitionBatch]:
        if self._fatal is not None:
            raise self._fatal
        msgs = self.consumer.consume(self.max_poll_records, timeout_ms / 1000.0)
        if self._fatal is not None:
            raise self._fatal
        out: dict[int, PartitionBatch] = {}
        if not msgs:
            return out
        dtopic = self.decisions_topic
        # librdkafka hands out fetched messages in runs of one partition: take each run whole.
        n = len(msgs)
        # No error event (the usual case): C-level loops find the runs. Compared by identity:
        # KafkaError's == raises on None, so errors.count(None) would fail on any error event.
        if not any(map(is_not, map(self._error, msgs), repeat(None))):
            topics = list(map(self._topic, msgs))
            parts = np.fromiter(map(self._partition, msgs), np.int64, n)
            change = parts[1:] != parts[:-1]
            if 0 < topics.count(dtopic) < n:  # both topics: a run also ends where the topic changes
                is_decision = np.fromiter(map(dtopic.__eq__, topics), bool, n)
                change |= is_decision[1:] != is_decision[:-1]
            cuts = [0, *(np.flatnonzero(change) + 1).tolist(), n]
            for start, end in zip(cuts[:-1], cuts[1:], strict=True):
                self._flush(out, msgs[start:end], topics[start], int(parts[start]))
            return out
        run_topic, run_part, start = None, -1, 0
        for i, m in enumerate(msgs):
            if m.error() is not None:
                self._flush(out, msgs[start:i], run_topic, run_part)
                self._message_error(m)
                run_topic, start = None, i + 1
                continue
            t, p = m.topic(), m.partition()
            if p != run_part or t != run_topic:
                self._flush(out, msgs[start:i], run_topic, run_part)
                run_topic, run_part, start = t, p, i
        self._flush(out, msgs[start:], run_topic, run_part)
        return out

    def _flush(self, out: dict[int, PartitionBatch], run: list, topic: str | None, part: int) -> None:
        """Add one run of messages of one topic and partition (nothing for an empty run)."""
        if topic is None or not run:
            return
        b = out.get(part)
        if b is None:
            b = out[part] = PartitionBatch(part)
        b.add(topic, list(map(self._value, run)), list(map(self._offset, run)), decisions=topic == self.decisions_topic)

    def _message_error(self, m) -> None:
        err = m.error()
        from confluent_kafka import KafkaError

        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise self._kafka_exception(err)
        self._on_error(err)

    def commit(self, offsets: dict[str, int], *, wait: bool = True) -> None:
        """Commit exactly these next offsets (those of a durable checkpoint), for assigned partitions only.

        ``wait=False`` commits asynchronously; restarts seek to the checkpoint's own
        offsets, so a lost asynchronous commit loses nothing.
        """
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        to_commit = []
        for key, nxt in offsets.items():
            topic, _, part = key.rpartition(":")
            if (topic, int(part)) in assigned:
                to_commit.append(self._tp(topic, int(part), nxt))
        if not to_commit:
            return
        result = self.consumer.commit(offsets=to_commit, asynchronous=not wait)
        if wait:
            failed = [tp for tp in result or () if tp.error is not None]
            if failed:
                raise self._kafka_exception(failed[0].error)

    def assigned(self) -> list[int]:
        return sorted({tp.partition for tp in self.consumer.assignment()})

    def lag(
        self, positions: dict[str, int], timeout_s: float = 5.0, *, cached: bool = False
    ) -> dict[tuple[str, int], int]:
        """Messages behind the end of each assigned partition; raises when the broker does not answer.

        Every fetch response carries the high watermark, so librdkafka's cached one is
        current while we consume. ``cached``: records just arrived, which proves the
        broker answers, so no round trip at all; otherwise one round trip per probe
        proves it (it waits behind the in-flight fetch, and the loop waits on it).
        """
        tps = self.consumer.assignment()
        deadline = time.monotonic() + timeout_s
        out = {}
        for i, tp in enumerate(tps):
            marks = self.consumer.get_watermark_offsets(tp, cached=True) if i or cached else None
            if marks is None or marks[1] < 0:
                left = deadline - time.monotonic()
                marks = self.consumer.get_watermark_offsets(tp, timeout=left, cached=False) if left > 0 else None
            if marks is None:
                raise TimeoutError(f"no watermark offsets for {tp.topic}:{tp.partition} within {timeout_s} s")
            out[(tp.topic, tp.partition)] = max(0, marks[1] - positions.get(tp_key(tp.topic, tp.partition), 0))
        return out

    def close(self) -> None:
        """Leave the group; commits nothing (auto-commit is off)."""
        try:
            self.consumer.close()
        except Exception:  # closing a consumer whose broker is gone must not hide the real exit
            log.warning("consumer close failed", exc_info=True)
