"""The evaluator: one replica of the group merges every partition's statistics and acts.

Leadership is a PostgreSQL session advisory lock (``pg_try_advisory_lock``) on a
connection of its own, keyed by the consumer group: exactly one session holds it, and
PostgreSQL frees it when that session ends — at once when the holder's process dies
(its socket closes), within the TCP keepalive bound set here when its host vanishes.
Every replica tries the lock each evaluation, so a dead evaluator is replaced within
one evaluation interval after PostgreSQL has seen its connection close.

The evaluator merges its own partitions from memory and every other partition from
the partial its owner saved with its last checkpoint (``fairwatch_checkpoints`` rows
``<group>/<partition>/partial``): one query per evaluation, reading one bounded row
per partition (see ``docs/replicas.md``). On SQLite there is one replica and no lock:
it is the evaluator and merges its own partitions, as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from fairwatch.monitor.engine import Engine, EngineSettings
from fairwatch.monitor.partials import PARTIAL, Partial, merge, merged_gauges, read_partial
from fairwatch.monitor.snapshot import Sample, Snapshot

__all__ = ["Evaluation", "Evaluator", "Leadership", "lock_key", "replica_name"]

log = logging.getLogger("fairwatch.evaluator")

#: libpq keepalives on the lock's connection: a vanished host is noticed within
#: idle + interval × count = 5 + 2 × 3 = 11 s (a killed process: at once).
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}


def lock_key(group: str) -> int:
    """A signed 64-bit advisory lock id for a consumer group.

    >>> lock_key("fairwatch") == lock_key("fairwatch") != lock_key("other")
    True
    """
    digest = hashlib.blake2b(f"fairwatch-evaluator/{group}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def replica_name() -> str:
    """``$FAIRWATCH_REPLICA``, else host name (the pod name on Kubernetes) and process id."""
    return os.environ.get("FAIRWATCH_REPLICA") or f"{socket.gethostname()}-{os.getpid()}"


class Leadership:
    """Who evaluates: the holder of the group's advisory lock (PostgreSQL); always us on SQLite."""

    def __init__(self, url: str, group: str):
        self.url = url
        self.group = group
        self.shared = urlparse(url).scheme in ("postgresql", "postgres")
        self.key = lock_key(group)
        self.conn = None
        self.held = not self.shared

    def check(self) -> bool:
        """Hold or try the lock; ``False`` when another replica holds it or PostgreSQL is away."""
        if not self.shared:
            return True
        import psycopg

        try:
            if self.conn is None or self.conn.closed:
                self.held = False
                self.conn = psycopg.connect(self.url, autocommit=True, **KEEPALIVES)
            if self.held:
                self.conn.execute("SELECT 1")  # the session (and with it the lock) is still there
            else:
                row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                self.held = bool(row[0])
                if self.held:
                    log.info("evaluator elected", extra={"group": self.group})
        except psycopg.Error as exc:
            if self.held:
                log.warning("evaluator lock lost", extra={"error": type(exc).__name__})
            self.close()
        return self.held

    def partials(self) -> dict[int, bytes]:
        """Every partition's last published partial of this group (one query)."""
        prefix = f"{self.group}/"
        rows = self.conn.execute(
            "SELECT partition_key, state FROM fairwatch_checkpoints WHERE starts_with(partition_key, %s)",
            (prefix,),
        ).fetchall()
        out = {}
        for key, state in rows:
            middle = key[len(prefix) :]
            if middle.endswith(PARTIAL) and middle[: -len(PARTIAL)].isdigit():
                out[int(middle[: -len(PARTIAL)])] = bytes(state)
        return out

    def close(self) -> None:
        self.held = not self.shared
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


@dataclass(frozen=True)
class Evaluation:
    """One evaluation's result.

    ``export``: what this replica's ``/metrics`` shows — its own counters, and, when it is the
    evaluator, the merged gauges. ``engine`` and ``whole`` (the evaluator only): the merged
    statistics and their snapshot, counters included, which is what the alert loop judges:
    the evidence of a whole model, never of one replica's share of its partitions.
    """

    export: Snapshot
    engine: Engine | None = None
    whole: Snapshot | None = None


class Evaluator:
    """Each evaluation: this replica's counters; if it leads, the merged statistics to act on."""

    def __init__(self, url: str, group: str, settings: EngineSettings, *, replica: str | None = None):
        self.leadership = Leadership(url, group)
        self.settings = settings
        self.replica = replica or replica_name()
        self.last_merge_s = 0.0
        self.partitions_merged = 0

    def evaluate(self, own: dict[int, list[Partial]], local: list[Sample]) -> Evaluation:
        """``own``: this replica's partitions' statistics; ``local``: its counters."""
        leader = self.leadership.check()
        merged = None
        if leader:
            parts = dict(own)
            if self.leadership.shared:
                try:
                    for p, blob in self.leadership.partials().items():
                        parts.setdefault(p, read_partial(blob))  # own partitions: the fresher memory
                except Exception as exc:  # PostgreSQL away: no merged view this round, and no actions
                    log.warning("partials unreadable", extra={"error": type(exc).__name__})
                    self.leadership.close()
                    leader = False
            if leader:
                t0 = time.perf_counter()
                merged = merge(parts.values(), self.settings)
                self.last_merge_s = time.perf_counter() - t0
                self.partitions_merged = len(parts)
        samples = [*local, Sample("fairwatch_evaluator", {"replica": self.replica}, float(leader))]
        if merged is None:
            return Evaluation(Snapshot(time.time(), tuple(samples)))
        whole = merged.snapshot()
        gauges = tuple(merged_gauges(whole.samples))
        export = Snapshot(whole.created, gauges + tuple(samples), whole.windows, whole.event_time)
        return Evaluation(export, merged, whole)

    def close(self) -> None:
        self.leadership.close()
