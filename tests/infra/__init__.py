"""Real services for the integration tests: Kafka and PostgreSQL, with pytest fixtures.

Each service comes from an environment variable if set, else testcontainers if a Docker
engine answers, else a local process this package starts and removes
(see :mod:`tests.infra.kafka_broker`, :mod:`tests.infra.postgres`, :mod:`tests.infra.fixtures`).
"""

from __future__ import annotations

from tests.infra.kafka_broker import (
    KAFKA_VERSION,
    ContainerKafka,
    ExternalKafka,
    LocalKafkaBroker,
    RestartUnsupported,
    ensure_kafka_jars,
    kafka_broker,
    provide_kafka,
)
from tests.infra.postgres import (
    ContainerPostgres,
    ExternalPostgres,
    LocalPostgres,
    postgres_server,
    provide_postgres,
)
from tests.infra.processes import ServiceUnavailable

__all__ = [
    "KAFKA_VERSION",
    "ContainerKafka",
    "ContainerPostgres",
    "ExternalKafka",
    "ExternalPostgres",
    "LocalKafkaBroker",
    "LocalPostgres",
    "RestartUnsupported",
    "ServiceUnavailable",
    "ensure_kafka_jars",
    "kafka_broker",
    "postgres_server",
    "provide_kafka",
    "provide_postgres",
]
