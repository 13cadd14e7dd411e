"""pytest fixtures for real services; registered by the root conftest.py.

A service that cannot be provided fails the test when ``CI=true`` (CI must never pass by
skipping) and skips it elsewhere, saying what is missing and how to get it.

- ``kafka_broker`` (session): the broker object: ``bootstrap_servers``, ``kind``
  (``local``/``testcontainers``/``external``), ``restartable``, ``stop()``/``start()``.
- ``kafka_bootstrap`` (session): its ``host:port``.
- ``restartable_kafka_broker``: the same broker, for tests that stop and start it; skipped
  when the broker is not ours to stop (``FAIRWATCH_KAFKA_BOOTSTRAP``, testcontainers).
  It is started again after the test if the test left it stopped.
- ``postgres_server`` (session) and ``postgres_dsn`` (session): a DSN for psycopg 3.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import NoReturn

import pytest

from tests.infra.kafka_broker import KafkaBroker, provide_kafka
from tests.infra.postgres import PostgresServer, provide_postgres
from tests.infra.processes import ServiceUnavailable

_TRUE = {"1", "true", "yes", "on"}

# kafka-python 3.x loads its protocol schemas with importlib.resources.read_text, deprecated
# on Python 3.11/3.12 (and undeprecated in 3.13); with filterwarnings=error that import-time
# warning would break any test that first touches a kafka-python class.
KAFKA_PYTHON_WARNING = r"ignore:(read_text|open_text) is deprecated. Use files\(\) instead:DeprecationWarning"


# kafka-python 3.0.x (kafka/net/inet.py, KafkaNetSocket.connect) does not close the socket
# of a refused connect; the ResourceWarning at its collection fails a run with
# filterwarnings=error as soon as a test sees a broker go away. Only sockets that never
# connected (no peer, wildcard local address) match, so our own leaks still fail.
KAFKA_PYTHON_SOCKET_WARNING = (
    r"ignore:unclosed <socket\.socket fd=\d+, family=\d+, type=\d+, proto=\d+, "
    r"laddr=\('0\.0\.0\.0', \d+\)>$:ResourceWarning"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("filterwarnings", KAFKA_PYTHON_WARNING)
    config.addinivalue_line("filterwarnings", KAFKA_PYTHON_SOCKET_WARNING)
    close_failed_connect_sockets()


def close_failed_connect_sockets() -> None:
    """Make kafka-python close the socket of a connect that fails or times out.

    kafka-python 3.0.x (``kafka/net/inet.py``, ``KafkaNetSocket.sock_connect``) leaves that
    socket to the garbage collector. A connect still in progress at its deadline can complete
    afterwards, so the ResourceWarning at collection can name a *connected* socket, which the
    filter above (never-connected sockets only) does not match. CI saw it once, in
    ``test_kafka_live_consumer_rides_through_broker_restart``, a broker restart on a loaded
    machine. Closing the socket where the connect fails keeps ``filterwarnings=error``
    catching our own leaks. In a daemon the GC closes these sockets; nothing to do there.
    kafka-python 2.x has no such module, and nothing is patched.
    """
    try:
        with warnings.catch_warnings():  # kafka-python's import-time read_text warning (above)
            warnings.simplefilter("ignore", DeprecationWarning)
            from kafka.net.inet import KafkaNetSocket
    except ImportError:
        return
    original = KafkaNetSocket.sock_connect
    if getattr(original, "closes_on_failure", False):
        return

    async def sock_connect(self, net, sock, sockaddr, timeout_at=None):
        try:
            return await original(self, net, sock, sockaddr, timeout_at=timeout_at)
        except BaseException:
            sock.close()
            raise

    sock_connect.closes_on_failure = True
    KafkaNetSocket.sock_connect = sock_connect


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in _TRUE


def service_unavailable(service: str, reason: object) -> NoReturn:
    """Fail under CI, skip elsewhere; ``reason`` says what is missing and how to get it."""
    message = f"{service} is not available: {reason}"
    if in_ci():
        pytest.fail(f"{message}\n(CI=true: a missing service is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    try:
        broker = provide_kafka()
    except ServiceUnavailable as exc:
        service_unavailable("Kafka", exc)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture
def restartable_kafka_broker(kafka_broker: KafkaBroker) -> Iterator[KafkaBroker]:
    if not kafka_broker.restartable:
        pytest.skip(
            f"the {kafka_broker.kind} Kafka broker at {kafka_broker.bootstrap_servers} cannot be "
            "stopped and started by the tests; unset FAIRWATCH_KAFKA_BOOTSTRAP and set "
            "FAIRWATCH_TEST_DOCKER=0 to use a local Apache Kafka broker"
        )
    try:
        yield kafka_broker
    finally:
        kafka_broker.start()  # no-op when running; later tests share this broker


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = provide_postgres()
    except ServiceUnavailable as exc:
        service_unavailable("PostgreSQL", exc)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.dsn


@pytest.fixture
def fresh_database(postgres_dsn):
    """A new empty database on the test server, dropped afterwards."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base, _, _ = postgres_dsn.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
