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
from dataclasses import dataclass

from fairwatch.streaming import kafka_loop
from fairwatch.streaming.simulator import LoanSimulator

__all__ = ["SimulateResult", "simulate"]

log = logging.getLogger("fairwatch.streaming.producer")


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
) -> SimulateResult:
    """Produce until ``duration`` simulated seconds, ``max_decisions`` decisions, or ``stop``."""
    from kafka import KafkaProducer

    kafka_loop.install()

    security = {k: v for k, v in (client_options or {}).items() if k.startswith(("security_", "sasl_", "ssl_"))}
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        compression_type=None,
        **security,
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
