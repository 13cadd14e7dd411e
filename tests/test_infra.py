"""The test infrastructure is real: a Kafka broker that keeps committed offsets across a
restart, a PostgreSQL server with working transactions, and the fail-in-CI / skip-elsewhere
rule for missing services."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest

from tests.infra import fixtures
from tests.infra.docker_engine import docker_available
from tests.infra.kafka_broker import LocalKafkaBroker, random_cluster_id
from tests.infra.processes import ServiceUnavailable, free_ports, port_accepts

PARTITIONS = 3


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fairwatch-test-infra")
    try:
        admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
            timeout_ms=30_000,
        )
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, values: range) -> dict[int, int]:
    """Send ``values`` keyed by value; returns messages per partition (all acked)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        deadline = time.monotonic() + 30
        while len(producer.partitions_for(topic) or ()) < PARTITIONS:
            assert time.monotonic() < deadline, f"topic {topic} has no metadata"
            time.sleep(0.1)
        futures = [producer.send(topic, key=f"key-{v}".encode(), value=str(v).encode()) for v in values]
        producer.flush(timeout=30)
        per_partition: dict[int, int] = defaultdict(int)
        for future in futures:
            per_partition[future.get(timeout=30).partition] += 1
        return dict(per_partition)
    finally:
        producer.close(timeout=10)


def _consumer(bootstrap: str, topic: str, group: str):
    from kafka import KafkaConsumer

    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=_unique("fairwatch-test-consumer"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=200,
    )


def _consume_and_commit(consumer, want: int, *, limit: int | None = None, timeout: float = 60):
    """Poll until ``want`` records arrived; after each batch commit exactly what was read.

    With ``limit`` set, read at most ``limit`` records per partition and commit only those.
    """
    from kafka.structs import OffsetAndMetadata

    records = []
    taken: dict = defaultdict(int)
    deadline = time.monotonic() + timeout
    while len(records) < want:
        assert time.monotonic() < deadline, f"got {len(records)} of {want} records in {timeout} s"
        batch = consumer.poll(timeout_ms=500)
        offsets = {}
        for tp, recs in batch.items():
            if limit is not None:
                recs = recs[: max(0, limit - taken[tp])]
                if len(recs) < len(batch[tp]):
                    consumer.pause(tp)
            if recs:
                taken[tp] += len(recs)
                records.extend(recs)
                offsets[tp] = OffsetAndMetadata(recs[-1].offset + 1, "", -1)
        if offsets:
            consumer.commit(offsets)
    return records


@pytest.mark.integration
def test_kafka_round_trip_three_partitions_manual_commits(kafka_bootstrap: str) -> None:
    from kafka import TopicPartition

    topic, group = _unique("fairwatch-infra"), _unique("fairwatch-infra-group")
    _create_topic(kafka_bootstrap, topic)
    per_partition = _produce(kafka_bootstrap, topic, range(1000))
    assert sum(per_partition.values()) == 1000
    assert sorted(per_partition) == [0, 1, 2], per_partition

    consumer = _consumer(kafka_bootstrap, topic, group)
    try:
        records = _consume_and_commit(consumer, 1000)
        assert sorted(int(r.value) for r in records) == list(range(1000))  # all, once each
        by_partition = defaultdict(list)
        for r in records:
            by_partition[r.partition].append(r.offset)
        for partition, offsets in by_partition.items():  # in order within a partition
            assert offsets == list(range(per_partition[partition]))
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        end = consumer.end_offsets(tps)
        assert {tp: consumer.committed(tp) for tp in tps} == end
        assert sum(end.values()) == 1000
    finally:
        consumer.close(autocommit=False)


@pytest.mark.integration
def test_kafka_committed_offsets_and_data_survive_broker_restart(restartable_kafka_broker) -> None:
    from kafka import TopicPartition

    broker = restartable_kafka_broker
    bootstrap = broker.bootstrap_servers
    topic, group = _unique("fairwatch-restart"), _unique("fairwatch-restart-group")
    _create_topic(bootstrap, topic)
    per_partition = _produce(bootstrap, topic, range(300))
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    consumer = _consumer(bootstrap, topic, group)
    try:  # read and commit 40 records per partition, no more
        first = _consume_and_commit(consumer, 40 * PARTITIONS, limit=40)
        committed_before = {tp: consumer.committed(tp) for tp in tps}
    finally:
        consumer.close(autocommit=False)
    assert committed_before == {tp: 40 for tp in tps}

    broker.stop()
    assert not port_accepts(broker.port)  # really down
    broker.start()
    assert broker.bootstrap_servers == bootstrap  # same address after the restart

    consumer = _consumer(bootstrap, topic, group)
    try:
        assert {tp: consumer.committed(tp) for tp in tps} == committed_before
        rest = _consume_and_commit(consumer, 300 - len(first))
        assert sorted(int(r.value) for r in first + rest) == list(range(300))
        assert min(r.offset for r in rest) >= 40  # resumed at the commits, not the start
        assert {tp: consumer.committed(tp) for tp in tps} == {
            TopicPartition(topic, p): n for p, n in per_partition.items()
        }
    finally:
        consumer.close(autocommit=False)

    # The broker still takes writes after the restart.
    assert sum(_produce(bootstrap, topic, range(300, 330)).values()) == 30


@pytest.mark.integration
def test_postgres_transactions_commit_and_roll_back(postgres_dsn: str) -> None:
    try:
        import psycopg
    except ImportError:
        fixtures.service_unavailable("psycopg", "pip install 'psycopg[binary]>=3.1'")
    table = _unique("fairwatch_infra").replace("-", "_")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text NOT NULL)")
        try:
            with conn.transaction():
                conn.execute(f"INSERT INTO {table} VALUES (1, 'kept')")
            with pytest.raises(RuntimeError), conn.transaction():
                conn.execute(f"INSERT INTO {table} VALUES (2, 'rolled back')")
                raise RuntimeError("abort this transaction")
            with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
                conn.execute(f"INSERT INTO {table} VALUES (3, 'rolled back too')")
                conn.execute(f"INSERT INTO {table} VALUES (1, 'duplicate key')")
            with psycopg.connect(postgres_dsn) as other:  # another session sees only commits
                rows = other.execute(f"SELECT id, note FROM {table} ORDER BY id").fetchall()
            assert rows == [(1, "kept")]
        finally:
            conn.execute(f"DROP TABLE {table}")


@pytest.mark.integration
def test_broker_start_failure_names_the_log(kafka_broker) -> None:
    if kafka_broker.kind != "local":
        pytest.skip("only the local Apache Kafka broker is started from jars here")
    broker = LocalKafkaBroker(heap_opts="-Xmx1k", start_timeout=60)  # too small: JVM refuses
    try:
        with pytest.raises(ServiceUnavailable) as info:
            broker.start()
        assert str(broker.log_path) in str(info.value)
        assert "exited with code" in str(info.value)
        assert broker.log_path.exists()
    finally:
        broker.close()
        broker.log_path.unlink(missing_ok=True)


def test_missing_service_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Kafka is not available: no java"):
        fixtures.service_unavailable("Kafka", "no java")


def test_missing_service_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not available: no initdb"):
        fixtures.service_unavailable("PostgreSQL", "no initdb")


def test_no_docker_engine_is_answered_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    docker_available.cache_clear()
    try:
        started = time.monotonic()
        assert docker_available() is False
        assert time.monotonic() - started < 1
        monkeypatch.setenv("FAIRWATCH_TEST_DOCKER", "0")
        docker_available.cache_clear()
        assert docker_available() is False
    finally:
        docker_available.cache_clear()


def test_local_broker_config_is_single_node_kraft_on_loopback() -> None:
    broker = LocalKafkaBroker()
    try:
        props = broker.properties()
        assert props["process.roles"] == "broker,controller"
        assert props["node.id"] == "1"
        assert props["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{broker.port},CONTROLLER://127.0.0.1:{broker.controller_port}"
        )
        assert props["offsets.topic.replication.factor"] == "1"
        assert props["transaction.state.log.replication.factor"] == "1"
        assert props["group.initial.rebalance.delay.ms"] == "0"
        assert props["auto.create.topics.enable"] == "true"
        assert broker.port != broker.controller_port
        assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
    finally:
        broker.close()
    assert not broker.workdir.exists()


def test_cluster_ids_and_free_ports_are_well_formed() -> None:
    ids = {random_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(1024 <= p <= 65535 for p in ports)


@pytest.mark.integration
def test_kafka_live_consumer_rides_through_broker_restart(restartable_kafka_broker) -> None:
    broker = restartable_kafka_broker
    bootstrap = broker.bootstrap_servers
    topic, group = _unique("fairwatch-live"), _unique("fairwatch-live-group")
    _create_topic(bootstrap, topic)
    _produce(bootstrap, topic, range(100))
    consumer = _consumer(bootstrap, topic, group)
    try:
        records = _consume_and_commit(consumer, 100)
        broker.stop()  # mid-stream: the consumer stays open and keeps polling
        for _ in range(4):
            assert not any(consumer.poll(timeout_ms=250).values())
        broker.start()
        _produce(bootstrap, topic, range(100, 200))
        records += _consume_and_commit(consumer, 100, timeout=90)
    finally:
        consumer.close(autocommit=False)
    assert sorted(int(r.value) for r in records) == list(range(200))  # nothing lost, no repeats


def test_a_failed_kafka_python_connect_closes_its_socket() -> None:
    """kafka-python 3.0.x leaves the socket of a failed connect to the GC; the fixtures make it
    close it (``fixtures.close_failed_connect_sockets``), so a ResourceWarning at collection
    is always a leak of ours. Here: a connect whose deadline has passed."""
    import socket

    import kafka.errors
    from kafka.net.inet import KafkaNetSocket

    fixtures.close_failed_connect_sockets()  # idempotent: pytest_configure did it already
    assert KafkaNetSocket.sock_connect.closes_on_failure
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    coro = KafkaNetSocket().sock_connect(None, sock, ("127.0.0.1", free_ports(1)[0]), timeout_at=time.monotonic() - 1)
    with pytest.raises(kafka.errors.KafkaTimeoutError):
        coro.send(None)
    assert sock.fileno() == -1  # closed, not left to the garbage collector
