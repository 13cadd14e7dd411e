"""The confluent-kafka client backend against a real broker, and the dead-letter guarantee.

* ``kafka.client: confluent``: the daemon gives the same metrics as ``fairwatch replay``
  of the same events, and survives SIGKILL + restart exactly.
* Default client: while the dead-letter topic cannot take a poison message, the
  consumer does not advance past it; once it can, everything is counted exactly once.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from fairwatch.monitor.replay import replay
from fairwatch.streaming.kafka_confluent import MSG_FIXED_OPTION, MSG_UNKNOWN_OPTION, OPTION_NAMES, translate_options

from fairwatch.app.config import Config
from tests.test_kafka import (
    POISON,
    DaemonProcess,
    Topics,
    assert_no_message_stopped_the_stream,
    assert_same_metrics,
    decisions_total,
    events_total,
    make_events,
    produce,
    rename_topics,
    write_files,
)

ROOT = Path(__file__).resolve().parents[1]
INVALID_TOPIC = "fairness dead letters!"  # Kafka topic names allow only [a-zA-Z0-9._-]


class Daemon(DaemonProcess):
    """``fairwatch run`` in a subprocess with a chosen client, alerts off, working in ``tmp``."""

    def __init__(self, bootstrap: str, topics: Topics, state: str, tmp: Path, *, client: str, name: str = "d"):
        super().__init__(bootstrap, topics, state, tmp, name)
        self.tmp = tmp
        self.env.update(
            {
                "FAIRWATCH_KAFKA__CLIENT": client,
                "FAIRWATCH_ALERTS__ENABLED": "false",  # replay has no alert state to compare with
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
            }
        )

    def start(self) -> Daemon:
        self._fh = open(self.log, "ab")  # noqa: SIM115 - closed by kill()/stop()
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._fh, stderr=subprocess.STDOUT, cwd=self.tmp)
        return self


def replay_samples(dec: Path, out: Path, tmp: Path) -> dict:
    """``fairwatch replay`` of the files with the daemon's settings (alerts off: no confirm windows)."""
    settings = Config.model_validate({"alerts": {"enabled": False}}).engine_settings()
    r = replay(dec, outcomes=out, settings=settings, dead_letter=tmp / "replay.dl.jsonl", progress=False)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in r.snapshot.samples}


def n_decisions(events) -> int:
    return sum(1 for o, _ in events if not o)


def renumbered(events, prefix: str):
    """The same events with ids made unique per chunk."""
    return [(o, v.replace(b'"decision_id":"', f'"decision_id":"{prefix}-'.encode())) for o, v in events]


# -- option translation (no broker) -------------------------------------------------------


def test_kafka_python_option_names_translate_to_librdkafka():
    conf = translate_options(
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "u",
            "sasl_plain_password": "p",
            "ssl_cafile": "/ca.pem",
            "ssl_certfile": "/c.pem",
            "ssl_keyfile": "/k.pem",
            "group_instance_id": "replica-0",
            "request_timeout_ms": 20_000,
            "session_timeout_ms": 12_000,
            "ssl_check_hostname": False,
            "socket.keepalive.enable": True,
        }
    )
    assert conf == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
        "ssl.certificate.location": "/c.pem",
        "ssl.key.location": "/k.pem",
        "group.instance.id": "replica-0",
        "socket.timeout.ms": 20_000,
        "session.timeout.ms": 12_000,
        "ssl.endpoint.identification.algorithm": "none",
        "socket.keepalive.enable": True,
    }
    from confluent_kafka import Consumer

    Consumer({"group.id": "x", **{k: v for k, v in conf.items() if not k.startswith("ssl.")}}).close()


def test_unknown_or_contract_breaking_options_fail_clearly():
    with pytest.raises(ValueError) as e:
        translate_options({"sasl_oauth_token_provider": object()})
    assert str(e.value) == MSG_UNKNOWN_OPTION.format(name="sasl_oauth_token_provider", valid=sorted(OPTION_NAMES))
    for name in ("enable_auto_commit", "enable.auto.commit", "enable.auto.offset.store"):
        with pytest.raises(ValueError) as e:
            translate_options({name: True})
        assert str(e.value).startswith(MSG_FIXED_OPTION.format(name=name, why="")[:-2])


# -- the confluent client, end to end ------------------------------------------------------


@pytest.mark.integration
def test_confluent_daemon_equals_replay(kafka_bootstrap, tmp_path):
    topics = Topics(kafka_bootstrap)
    events, key = make_events(seed=61, hours=2)
    n_poison = produce(kafka_bootstrap, topics, events, key, poison_every=997)
    n_dec = n_decisions(events)
    d = Daemon(kafka_bootstrap, topics, f"sqlite:///{tmp_path}/state.db", tmp_path, client="confluent").start()
    try:
        n_out = len(events) - n_dec
        live = d.wait_for(
            lambda m: events_total(m, topics.decisions) == n_dec and events_total(m, topics.outcomes) == n_out,
            what="all events",
        )
        assert events_total(live, topics.decisions, "invalid") == n_poison > 0
        assert d.get("/readyz")[0] == 200

        def lags(m):
            return {v for (n, _), v in m.items() if n == "fairwatch_consumer_lag"}

        # the lag probe runs every 5 s: wait for one taken after the catch-up
        lag = d.wait_for(lambda m: lags(m) == {0.0}, timeout=30, what="lag 0 on every partition")
        assert lags(lag) == {0.0}
    finally:
        assert d.stop() == 0
    dec, out = write_files(tmp_path, events)
    assert_same_metrics(rename_topics(live, topics), replay_samples(dec, out, tmp_path), ignore_events=True)
    assert_no_message_stopped_the_stream(d.log.read_text())


@pytest.mark.integration
def test_confluent_daemon_survives_sigkill_exactly(kafka_bootstrap, tmp_path):
    topics = Topics(kafka_bootstrap)
    rng = random.Random(8)
    d = Daemon(kafka_bootstrap, topics, f"sqlite:///{tmp_path}/state.db", tmp_path, client="confluent").start()
    all_events = []
    kills = 0
    for i in range(3):
        events, key = make_events(seed=70 + i, hours=1.0)
        events = renumbered(events, f"k{i}")
        all_events += events
        produce(kafka_bootstrap, topics, events, key)
        time.sleep(rng.uniform(0.5, 2.5))
        d.kill()
        kills += 1
        d.start()
    n_dec = n_decisions(all_events)
    try:
        n_out = len(all_events) - n_dec
        d.wait_for(
            lambda m: events_total(m, topics.decisions) >= n_dec and events_total(m, topics.outcomes) >= n_out,
            timeout=150,
            what="catch-up after kills",
        )
        time.sleep(1.5)  # anything counted twice would show now
        live = d.metrics()
    finally:
        assert d.stop() == 0
    assert kills >= 2
    assert decisions_total(live) == n_dec
    assert decisions_total(live, "race,sex") == n_dec
    assert events_total(live, topics.decisions) == n_dec
    assert events_total(live, topics.outcomes) == len(all_events) - n_dec
    dec, out = write_files(tmp_path, all_events)
    assert_same_metrics(rename_topics(live, topics), replay_samples(dec, out, tmp_path))


# -- dead letters: no acknowledgement, no advance (default client) ------------------------


def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int | None:
    """The group's committed next offset (``None``: nothing committed); does not join the group."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        (tp,) = c.committed([TopicPartition(topic, partition)], timeout=10)
    finally:
        c.close()
    return tp.offset if tp.offset >= 0 else None


def produce_poison(bootstrap: str, topic: str, key: bytes, value: bytes) -> int:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        return p.send(topic, key=key, value=value).get(timeout=30).offset
    finally:
        p.close()


@pytest.mark.integration
def test_unreachable_dead_letter_topic_stops_the_consumer_at_the_poison(kafka_bootstrap, tmp_path):
    topics = Topics(kafka_bootstrap, partitions=1)
    first, key = make_events(seed=81, hours=0.5)
    second, _ = make_events(seed=82, hours=0.5)
    second = renumbered(second, "after")
    state = f"sqlite:///{tmp_path}/state.db"
    produce(kafka_bootstrap, topics, first, key)
    n1, o1 = n_decisions(first), len(first) - n_decisions(first)

    d = Daemon(kafka_bootstrap, topics, state, tmp_path, client="kafka-python")
    d.env["FAIRWATCH_KAFKA__DEADLETTER_TOPIC"] = INVALID_TOPIC
    d.start()
    try:
        d.wait_for(
            lambda m: events_total(m, topics.decisions) == n1 and events_total(m, topics.outcomes) == o1,
            what="first events",
        )
        poison_offset = produce_poison(kafka_bootstrap, topics.decisions, key, POISON[0])
        assert poison_offset == n1
        produce(kafka_bootstrap, topics, second, key)
        # The poison cannot be dead-lettered: nothing at or after it on its topic may be counted
        # or committed. The outcomes topic is another log: it may go on (fetched on its own),
        # but never counts an event twice across the restarts.
        o2 = len(second) - n_decisions(second)
        seen_ok, readyz = set(), set()
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            m = d.metrics()
            if m:
                seen_ok.add(events_total(m, topics.decisions))
                assert events_total(m, topics.outcomes) <= o1 + o2
            readyz.add(d.get("/readyz")[0])
            time.sleep(0.3)
        assert seen_ok == {n1}
        c = committed(kafka_bootstrap, topics.group, topics.decisions)
        # nothing past the poison committed (None: the first events' checkpoint had not committed
        # yet when the poison came, which a busy machine allows)
        assert c is None or c <= poison_offset
        log_text = d.log.read_text()
        assert "stream failed" in log_text and INVALID_TOPIC in log_text
        assert 503 in readyz  # not ready while it reconnects
    finally:
        assert d.stop() == 0
    c = committed(kafka_bootstrap, topics.group, topics.decisions)
    assert c is None or c <= poison_offset

    # The topic fixed: the poison goes to the dead letters, everything is counted exactly once.
    d = Daemon(kafka_bootstrap, topics, state, tmp_path, client="kafka-python", name="fixed").start()
    n, o = n1 + n_decisions(second), o1 + len(second) - n_decisions(second)
    try:
        live = d.wait_for(
            lambda m: events_total(m, topics.decisions) == n and events_total(m, topics.outcomes) == o,
            what="all events once",
        )
        time.sleep(1.5)
        live = d.metrics()
    finally:
        assert d.stop() == 0
    assert decisions_total(live) == n
    assert events_total(live, topics.decisions, "invalid") == 1
    assert committed(kafka_bootstrap, topics.group, topics.decisions) == n + 1
    from kafka import KafkaConsumer

    c = KafkaConsumer(
        topics.deadletter, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    try:
        letters = [orjson.loads(r.value) for r in c]
    finally:
        c.close()
    assert [(x["offset"], x["reason"]) for x in letters] == [(poison_offset, "malformed_json")]
    dec, out = write_files(tmp_path, first + second)
    assert_same_metrics(rename_topics(live, topics), replay_samples(dec, out, tmp_path), ignore_events=True)


def test_confluent_poll_keeps_every_record_when_events_interleave(kafka_bootstrap):
    """Partition-EOF events (``enable.partition.eof``) arrive among the messages, so ``poll()``
    takes its message-by-message path: every record still comes once, under its own partition
    and topic, in offset order, and the next offsets follow the last records."""
    from confluent_kafka import Producer
    from fairwatch.streaming.kafka_confluent import ConfluentSource

    topics = Topics(kafka_bootstrap, partitions=2)
    prod = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    sent: dict[tuple[str, int], list[bytes]] = {}
    for p in (0, 1):
        for topic, n in ((topics.decisions, 7), (topics.outcomes, 4)):
            for i in range(n):
                value = f"{topic[-3:]}-{p}-{i}".encode()
                prod.produce(topic, value, partition=p)
                sent.setdefault((topic, p), []).append(value)
    assert prod.flush(30) == 0
    src = ConfluentSource(
        bootstrap_servers=kafka_bootstrap,
        group_id=topics.group,
        on_assign=lambda parts: {},
        on_revoke=lambda parts: None,
        on_lost=lambda parts: None,
        decisions_topic=topics.decisions,
        outcomes_topic=topics.outcomes,
        client_options={"enable.partition.eof": True},
    )
    eofs = []
    message_error = src._message_error
    src._message_error = lambda m: (eofs.append(m.error().code()), message_error(m))
    got: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
    nxt: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 60
        while sum(map(len, got.values())) < 22 and time.monotonic() < deadline:
            for p, b in src.poll(timeout_ms=500).items():
                got.setdefault((topics.decisions, p), []).extend(zip(b.decision_offsets, b.decisions, strict=True))
                got.setdefault((topics.outcomes, p), []).extend(zip(b.outcome_offsets, b.outcomes, strict=True))
                assert [m[0] for m in b.decision_meta] == [p] * len(b.decisions)
                nxt.update(b.next_offsets)
    finally:
        src.close()
    assert eofs, "no partition-EOF event came: the message-by-message path was not taken"
    assert {k: [v for _, v in recs] for k, recs in got.items() if recs} == sent
    assert all([o for o, _ in recs] == list(range(len(recs))) for recs in got.values())
    assert nxt == {f"{t}:{p}": len(v) for (t, p), v in sent.items()}
