"""``fairwatch simulate``: the loan simulator's decisions and delayed outcomes, written to Kafka.

Messages are keyed by model (docs/events.md), so one model's decisions keep their
order and its outcomes land on the same partition index. The simulated clock
runs ``speed`` times faster than the wall clock (``speed=0``: as fast as
possible).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fairwatch.streaming import kafka_loop
from fairwatch.streaming.simulator import LoanSimulator

from fairwatch.errors import FairwatchError

__all__ = ["ProduceError", "SimulateResult", "simulate"]


class ProduceError(FairwatchError, RuntimeError):
    """The simulator's events could not be written: names the brokers and Kafka's reason."""


log = logging.getLogger("fairwatch.streaming.producer")


@contextmanager
def _as_produce_error(bootstrap_servers: str) -> Iterator[None]:
    """Kafka's errors (brokers unreachable, events refused) as a :class:`ProduceError`."""
    from kafka.errors import KafkaError

    try:
        yield
    except KafkaError as exc:
        raise ProduceError(f"cannot write to Kafka at {bootstrap_servers}: {exc}") from None


@dataclass(frozen=True)
class SimulateResult:
    decisions: int
    outcomes: int
    simulated_seconds: float


def simulate(
    sim: LoanSimulator,
    *,
    bootstrap_servers: str,
    decisions_topic: str = "fairness.decisions",
    outcomes_topic: str = "fairness.outcomes",
    speed: float = 1.0,
    duration: float | None = None,
    max_decisions: int | None = None,
    step: float = 1.0,
    stop: threading.Event | None = None,
    client_options: dict | None = None,
    bootstrap_timeout: float = 30.0,
) -> SimulateResult:
    """Produce until ``duration`` simulated seconds, ``max_decisions`` decisions, or ``stop``.

    :class:`ProduceError` if the brokers cannot be reached within ``bootstrap_timeout`` seconds
    or refuse the events."""
    from kafka import KafkaProducer

    kafka_loop.install()
    options = {k: v for k, v in (client_options or {}).items() if k.startswith(("security_", "sasl_", "ssl_"))}
    if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG:  # kafka-python 3 (2.x waits for the first metadata)
        options["bootstrap_timeout_ms"] = int(bootstrap_timeout * 1000)
    with _as_produce_error(bootstrap_servers):
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            linger_ms=20,
            batch_size=256 * 1024,
            compression_type=None,
            **options,
        )
        stop = stop or threading.Event()
        n_dec = n_out = 0
        start_sim, start_wall = sim.now, time.monotonic()
        try:
            while not stop.is_set():
                if duration is not None and sim.now - start_sim >= duration:
                    break
                if max_decisions is not None and n_dec >= max_decisions:
                    break
                batch = sim.advance_batch(step)
                for value, is_out in zip(batch.values, batch.is_outcome.tolist(), strict=True):
                    if not is_out:
                        if max_decisions is not None and n_dec >= max_decisions:
                            continue
                        producer.send(decisions_topic, key=batch.key, value=value)
                        n_dec += 1
                    else:
                        producer.send(outcomes_topic, key=batch.key, value=value)
                        n_out += 1
                if speed > 0:
                    ahead = (sim.now - start_sim) / speed - (time.monotonic() - start_wall)
                    if ahead > 0:
                        stop.wait(ahead)
            producer.flush()
        finally:
            producer.close(timeout=10)
    log.info("simulation produced", extra={"decisions": n_dec, "outcomes": n_out})
    return SimulateResult(n_dec, n_out, sim.now - start_sim)
