"""``fairwatch run``: the daemon — Kafka source, engine, exporter, checkpoints, health.

Lifecycle (``run() -> int``): start → loop → drain with a bound.

* Each poll's records are applied per partition index; the events ledger and
  the models of each partition are tracked so a partition's state can be
  checkpointed, handed over on a rebalance, and restored on assignment.
* Every ``state.checkpoint_interval`` the state of every assigned partition and
  the offsets it contains are saved in one transaction; only then are exactly
  those offsets committed to Kafka. On restart (or assignment) the engine loads
  the checkpoint and seeks to its offsets: a crash loses nothing and counts
  nothing twice (re-delivered decisions are also deduplicated by id).
* Any failure of the stream (broker away, dead-letter topic not acknowledging)
  drops the in-memory state back to the last checkpoint and reconnects with
  backoff; meanwhile ``/readyz`` says not ready. The process does not crash.
* SIGTERM/SIGINT flip a flag: the loop ends, a final checkpoint is saved and
  committed, the consumer closes without committing anything else. A second
  signal forces exit.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from contextlib import ExitStack

from monitor.config import Config, ConfigError
from monitor.engine import Engine
from monitor.exporter import serve_metrics
from monitor.snapshot import Sample, SnapshotBoard
from monitor.state import Checkpoint, StateStore, open_state_store

__all__ = ["Daemon", "run"]

log = logging.getLogger("fairwatch.daemon")

EXIT_OK = 0


class Daemon:
    """One replica of the consumer group."""

    def __init__(self, config: Config, *, store: StateStore | None = None):
        self.config = config
        self.kc = config.kafka
        self.store = store or open_state_store(config.state.url)
        self.board = SnapshotBoard()
        self.stop = threading.Event()
        self.signals = 0
        self.ready = False
        self.broker_ok = False
        self.last_loop = time.monotonic()
        self.lag: dict[tuple[str, int], int] = {}
        self._reset_memory()
        self.source = None
        self.dead_letters = None
        self.closing = False
        self.alerts = None
        self.pipelines = None
        # kafka-python runs rebalance callbacks on its IO thread, concurrently with this
        # loop: every change of state takes this lock (never held across a blocking commit).
        self.lock = threading.RLock()

    # -- partition bookkeeping ---------------------------------------------------
    def _reset_memory(self) -> None:
        self.engine = Engine(self.config.engine_settings())
        self.ledgers: dict[int, Counter] = {}
        self.owned: dict[int, set[str]] = {}  # partition index → models read from it
        self.positions: dict[str, int] = {}  # "topic:partition" → next offset applied

    def _key(self, partition: int) -> str:
        return f"{self.kc.group_id}/{partition}"

    def _offsets_of(self, partition: int) -> dict[str, int]:
        return {k: v for k, v in self.positions.items() if int(k.rpartition(":")[2]) == partition}

    def on_assign(self, partitions: list[int]) -> dict[str, int]:
        with self.lock:
            return self._assign(partitions)

    def _assign(self, partitions: list[int]) -> dict[str, int]:
        self._forget([p for p in partitions if p in self.ledgers])  # re-assigned: start from the checkpoint
        cps = self.store.load([self._key(p) for p in partitions])
        offsets: dict[str, int] = {}
        for p in partitions:
            cp = cps.get(self._key(p))
            ledger: Counter = Counter()
            models: list[str] = []
            if cp is not None:
                ledger, models = self.engine.restore_blob(cp.state)
                offsets.update(cp.offsets)
            self.ledgers[p] = ledger
            self.engine.events.update(ledger)
            self.owned[p] = set(models)
        self.positions.update(offsets)
        self.ready = True
        log.info("partitions assigned", extra={"partitions": partitions, "restored": sorted(cps), "offsets": offsets})
        return offsets

    def _forget(self, partitions: list[int]) -> None:
        for p in partitions:
            self.engine.drop(self.owned.pop(p, set()))
            self.engine.events.subtract(self.ledgers.pop(p, Counter()))
            self.engine.events = +self.engine.events  # drop zero entries
            for k in list(self._offsets_of(p)):
                del self.positions[k]

    def on_revoke(self, partitions: list[int]) -> None:
        with self.lock:
            try:
                if not self.closing:  # closing: the drain checkpointed already, or state is suspect
                    self.checkpoint(partitions, wait=False)
            finally:
                self._forget(partitions)
                log.info("partitions revoked", extra={"partitions": partitions})

    def on_lost(self, partitions: list[int]) -> None:
        with self.lock:
            self._forget(partitions)  # no commit: another member owns them already
            log.warning("partitions lost", extra={"partitions": partitions})

    # -- checkpoints -------------------------------------------------------------
    def checkpoint(self, partitions: list[int] | None = None, *, wait: bool = True) -> None:
        with self.lock:
            parts = sorted(self.ledgers if partitions is None else set(partitions) & set(self.ledgers))
            if not parts:
                return
            cps = {
                self._key(p): Checkpoint(
                    self.engine.state_blob(self.owned.get(p, set()), events=self.ledgers[p]),
                    self._offsets_of(p),
                )
                for p in parts
            }
            self.store.save(cps)  # durable first …
        offsets = {k: v for cp in cps.values() for k, v in cp.offsets.items()}
        if self.source is not None:
            self.source.commit(offsets, wait=wait)  # … then Kafka may know
        log.debug("checkpoint saved", extra={"partitions": parts, "offsets": offsets})

    # -- the loop ----------------------------------------------------------------
    def _connect(self) -> None:
        from streaming.kafka import DeadLetterProducer, KafkaSource

        if self.kc.client == "confluent":
            from streaming.kafka_confluent import ConfluentSource as Source
        else:
            Source = KafkaSource
        options = dict(self.kc.options)
        if self.kc.group_instance_id:
            options["group_instance_id"] = self.kc.group_instance_id
        self.dead_letters = DeadLetterProducer(
            bootstrap_servers=self.kc.bootstrap_servers, topic=self.kc.deadletter_topic, client_options=options
        )
        self.source = Source(
            bootstrap_servers=self.kc.bootstrap_servers,
            group_id=self.kc.group_id,
            on_assign=self.on_assign,
            on_revoke=self.on_revoke,
            on_lost=self.on_lost,
            decisions_topic=self.kc.decisions_topic,
            outcomes_topic=self.kc.outcomes_topic,
            client_options=options,
            max_poll_records=self.kc.max_poll_records,
        )

    def _disconnect(self) -> None:
        self.ready = False
        self.closing = True
        try:
            for part in (self.source, self.dead_letters):
                if part is not None:
                    part.close()
        finally:
            self.source = self.dead_letters = None
            self.closing = False

    def _fresh(self, values: list[bytes], meta: list[tuple[int, int]], topic: str) -> tuple[list[bytes], list]:
        """Only records at or after the applied position: a stale or repeated fetch is a no-op.

        A gap (records missing before the first one) means the fetch and the checkpoint
        disagree: fail, so the loop restarts from the checkpoint.
        """
        if not values:
            return values, meta
        pos = self.positions.get(f"{topic}:{meta[0][0]}")
        if pos is None or meta[0][1] == pos:
            return values, meta
        if meta[0][1] > pos:
            raise RuntimeError(f"{topic}:{meta[0][0]}: fetched offset {meta[0][1]} but the next to apply is {pos}")
        keep = [i for i, (_, off) in enumerate(meta) if off >= pos]
        return [values[i] for i in keep], [meta[i] for i in keep]

    def _apply(self, batches) -> None:
        with self.lock:
            self._apply_locked(batches)

    def _apply_locked(self, batches) -> None:
        now = time.time()
        kc = self.kc
        for p, b in sorted(batches.items()):
            if p not in self.ledgers:
                continue  # fetched before a revoke: no longer ours
            b.decisions, b.decision_meta = self._fresh(b.decisions, b.decision_meta, kc.decisions_topic)
            b.outcomes, b.outcome_meta = self._fresh(b.outcomes, b.outcome_meta, kc.outcomes_topic)
            before = self.engine.events.copy()
            rejected = self.engine.process(
                decisions=b.decisions,
                outcomes=b.outcomes,
                now=now,
                decision_meta=b.decision_meta,
                outcome_meta=b.outcome_meta,
                decision_topic=self.kc.decisions_topic,
                outcome_topic=self.kc.outcomes_topic,
            )
            if rejected:
                self.dead_letters.send(rejected)  # raises DeadLetterError: then we do not advance
            delta = self.engine.events.copy()
            delta.subtract(before)
            self.ledgers.setdefault(p, Counter()).update(+delta)
            self.owned.setdefault(p, set()).update(self.engine.touched)
            self.positions.update(b.next_offsets)

    def health(self) -> tuple[bool, bool, str]:
        alive = time.monotonic() - self.last_loop < 60
        ready = self.ready and self.broker_ok
        detail = f"alive={alive} ready={ready} assigned={sorted(self.ledgers)} broker={'ok' if self.broker_ok else 'unreachable'}"
        return alive, ready, detail

    def _publish(self) -> None:
        with self.lock:
            snap = self.engine.snapshot()
            if self.alerts is not None:
                snap = self.alerts.evaluate(snap, self.engine)
        extra = [
            Sample("fairwatch_consumer_lag", {"topic": t, "partition": str(p)}, float(v))
            for (t, p), v in sorted(self.lag.items())
        ]
        if self.store.last_saved is not None:
            extra.append(Sample("fairwatch_last_checkpoint_timestamp_seconds", {}, self.store.last_saved))
        if self.pipelines is not None:
            for (model, result), n in sorted(self.pipelines.results_by_model().items()):
                extra.append(Sample("fairness_pipeline_runs_total", {"model": model, "result": result}, float(n)))
        self.board.publish(snap.with_samples(extra))

    def _signal(self, signum, frame) -> None:
        self.signals += 1
        if self.signals > 1:
            raise SystemExit(1)
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        self.stop.set()

    def run(self, *, install_signals: bool = True) -> int:
        cfg = self.config
        with ExitStack() as stack:
            server, _ = serve_metrics(self.board, host=cfg.metrics.host, port=cfg.metrics.port, health=self.health)
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
            stack.callback(self.store.close)
            if install_signals:
                previous = {s: signal.signal(s, self._signal) for s in (signal.SIGINT, signal.SIGTERM)}
                stack.callback(lambda: [signal.signal(s, h) for s, h in previous.items()])
            self._start_alerts(stack)
            log.info("daemon started", extra={"bootstrap": self.kc.bootstrap_servers, "group": self.kc.group_id, "state": cfg.state.url})
            backoff = 1.0
            while not self.stop.is_set():
                try:
                    self._connect()
                    self._loop()
                    backoff = 1.0
                except Exception as exc:  # the stream failed: back to the last checkpoint, reconnect
                    log.error("stream failed; resuming from the last checkpoint", extra={"error": repr(exc), "retry_in_s": backoff})
                    self._disconnect()
                    self._reset_memory()
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
            log.info("daemon stopped")
        return EXIT_OK

    def _start_alerts(self, stack: ExitStack) -> None:
        """Tier policy, actions and rollback on every evaluation; pipeline runs for Tier ≥ 2."""
        cfg = self.config
        if not cfg.alerts.enabled:
            return
        from alerts.loop import AlertLoop

        enqueue = None
        if cfg.pipeline_runs.enabled:
            from intervention.trigger import PipelineQueue

            self.pipelines = PipelineQueue(max_concurrent=cfg.pipeline_runs.max_concurrent, run_dir=cfg.pipeline_runs.run_dir)
            enqueue = self.pipelines.enqueue
        self.alerts = AlertLoop(cfg.alerts, enqueue=enqueue, confidence=cfg.confidence_level)
        stack.callback(self.alerts.close)
        admin = cfg.alerts.admin
        if admin.enabled:
            import os

            from alerts.admin import serve_admin

            token = os.environ.get(admin.token_env, "")
            if not token:
                raise ConfigError("alerts.admin.token_env", f"the admin API is enabled but ${admin.token_env} is empty")
            server = serve_admin(self.alerts, token=token, host=admin.host, port=admin.port)
            stack.callback(server.server_close)
            stack.callback(server.shutdown)

    def _loop(self) -> None:
        cfg = self.config
        next_checkpoint = next_eval = next_probe = time.monotonic()
        while not self.stop.is_set():
            self.last_loop = now = time.monotonic()
            batches = self.source.poll(timeout_ms=200)
            if batches:
                self._apply(batches)
            if now >= next_probe:
                try:
                    self.lag = self.source.lag(self.positions)
                    self.broker_ok = True
                except Exception as exc:
                    if self.broker_ok:
                        log.warning("broker unreachable", extra={"error": repr(exc)})
                    self.broker_ok = False
                next_probe = now + 5.0
            if now >= next_checkpoint and self.broker_ok:
                self.checkpoint()
                next_checkpoint = now + cfg.state.checkpoint_interval
            if now >= next_eval:
                self._publish()
                next_eval = now + cfg.evaluation_interval
        # Drain: final checkpoint + commit, bounded by the client's request timeout.
        try:
            self.checkpoint()
        finally:
            self._publish()
            self._disconnect()


def run(config: Config) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    return Daemon(config).run()
