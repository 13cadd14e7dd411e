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
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack

import numpy as np
import orjson

from fairwatch.alerts import durable as alert_state
from fairwatch.app.config import Config, ConfigError
from fairwatch.app.evaluator import Evaluator
from fairwatch.app.families import FAMILIES
from fairwatch.app.redact import redact, register_secret
from fairwatch.errors import FairwatchError
from fairwatch.monitor.daily import DailyStats, DailyStore, EventDays
from fairwatch.monitor.engine_state import CheckpointMismatch
from fairwatch.monitor.exporter import serve_metrics
from fairwatch.monitor.partials import PARTIAL, PartitionEngines, local_samples, partial_blob, partial_of
from fairwatch.monitor.snapshot import Sample, SnapshotBoard
from fairwatch.monitor.state import Checkpoint, StateStore, open_state_store

__all__ = ["CheckpointError", "Daemon", "run"]

log = logging.getLogger("fairwatch.daemon")

EXIT_OK = 0
DAILY = "/daily"  # checkpoint key suffix of a partition's per-day counts (redo record)


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
        #: a checkpoint that cannot be restored: the daemon stops (retrying cannot help, and going
        #: on without it would count that partition from its committed offsets with no state)
        self.fatal: Exception | None = None
        self.broker_ok = False
        self.clock = time.monotonic  # replaced in tests of the liveness rule
        self.last_loop = self.last_progress = self.clock()
        self.lag: dict[tuple[str, int], int] = {}
        # Per-day statistics for the monthly audit export: counted by an engine observer,
        # saved with each checkpoint as a redo record, applied to the daily store after it.
        daily_path = config.audit.daily_path(config.state.url)
        self.daily_store = DailyStore(daily_path) if daily_path else None
        self.scheduler = None
        self.wake = {"checkpoint": threading.Event(), "evaluate": threading.Event()}
        self._reset_memory()
        self.source = None
        self.dead_letters = None
        # Dead letters settled (written or undeliverable), by the original's topic:partition:offset:
        # kept across reconnects so a retry does not write them again, pruned behind commits.
        self.dead_letter_keys: set[str] = set()
        self.dead_letter_counts: Counter = Counter()  # (topic, result, reason) → letters
        self.closing = False
        self.alerts = None
        self.pipelines = None
        # The alert loop's memory (incidents, evidence, rollbacks): saved with every checkpoint
        # while this replica is the evaluator, resumed from the store whenever it becomes one.
        self.alerts_blob: bytes | None = None
        self.alerts_resumed = False
        self.alerts_unread = False  # the stored memory could not be read (warned once)
        # Merges every partition's statistics when this replica is the elected evaluator.
        self.evaluator = Evaluator(config.state.url, self.kc.group_id, config.engine_settings())
        # kafka-python runs rebalance callbacks on its IO thread, concurrently with this
        # loop: every change of state takes this lock (never held across a blocking commit).
        self.lock = threading.RLock()
        # The periodic checkpoint's write (database I/O and fsync) runs here while the
        # loop goes on applying records; its offsets are committed once it is durable.
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fairwatch-checkpoint")
        self.saving: Future | None = None

    # -- partition bookkeeping ---------------------------------------------------
    def _reset_memory(self) -> None:
        self.daily = DailyStats(self.config.calibration_bins) if self.daily_store is not None else None
        # One engine state per source partition: a partition's checkpoint holds exactly its counts.
        self.engines = PartitionEngines(self.config.engine_settings(), observer=self.daily)
        self.ledgers: dict[int, Counter] = {}
        self.owned: dict[int, set[str]] = {}  # partition index → models read from it
        self.positions: dict[str, int] = {}  # "topic:partition" → next offset applied

    def _key(self, partition: int) -> str:
        return f"{self.kc.group_id}/{partition}"

    def _alerts_key(self) -> str:
        return f"{self.kc.group_id}/alerts"

    def _resume_alerts(self) -> bool:
        """On becoming the evaluator (or starting): the alert loop goes on from the saved memory.

        ``False`` when the store cannot be read: then this replica neither acts nor saves
        its own memory (which may predate what the last evaluator did) until it can; acting
        from it could repeat a rollback or a page the store knows was done.
        """
        try:
            cp = self.store.load([self._alerts_key()]).get(self._alerts_key())
        except Exception as exc:
            if not self.alerts_unread:
                log.warning("alert state unreadable; not acting until it is read", extra={"error": type(exc).__name__})
            self.alerts_unread = True
            return False
        if cp is not None:
            alert_state.restore(self.alerts, cp.state)
        if self.alerts_unread:
            log.info("alert state read; acting again")
        self.alerts_unread = False
        self.alerts_resumed = True
        return True

    def _save_alerts(self) -> None:
        """Write the alert memory now, on the writer thread: after any checkpoint in flight,
        whose older memory must not land after it.

        Not left to the next checkpoint: that one waits for a reachable broker and for the
        write before it, and an evaluator killed in between would leave its successor an
        older memory, in which what was just acted on is still to do (seen on a loaded CI
        machine: the survivor reopened the incidents and acted on them again). The row needs
        no offsets, so it needs no broker. If the store is away the periodic checkpoint
        carries the memory as before.
        """
        rows = {self._alerts_key(): Checkpoint(self.alerts_blob)}
        try:
            self.writer.submit(self.store.save, rows, stamp=False).result()
        except Exception as exc:
            log.warning("alert state not saved; the next checkpoint carries it", extra={"error": repr(exc)})
            self.wake["checkpoint"].set()

    def _offsets_of(self, partition: int) -> dict[str, int]:
        return {k: v for k, v in self.positions.items() if int(k.rpartition(":")[2]) == partition}

    def on_assign(self, partitions: list[int]) -> dict[str, int]:
        with self.lock:
            return self._assign(partitions)

    def _assign(self, partitions: list[int]) -> dict[str, int]:
        try:
            self.settle(wait=False)  # inside a rebalance callback: the newest checkpoint is durable first
        except Exception as exc:  # then the last durable one is restored below, which is consistent too
            log.warning("checkpoint write failed", extra={"error": repr(exc)})
        self._forget([p for p in partitions if p in self.ledgers])  # re-assigned: start from the checkpoint
        cps = self.store.load([self._key(p) for p in partitions] + [self._key(p) + DAILY for p in partitions])
        offsets: dict[str, int] = {}
        for p in partitions:
            self._redo_daily(p, cps.get(self._key(p) + DAILY))
            cp = cps.get(self._key(p))
            ledger: Counter = Counter()
            models: list[str] = []
            if cp is not None:
                try:
                    ledger, models = self.engines[p].restore_blob(cp.state)
                except Exception as exc:
                    self.fatal = _unrestorable(self._key(p), exc)
                    log.error("checkpoint cannot be restored; stopping", extra={"key": self._key(p), "error": str(exc)})
                    raise self.fatal from None
                offsets.update(cp.offsets)
            self.ledgers[p] = ledger
            self.engines[p].events.update(ledger)
            self.owned[p] = set(models)
        self.positions.update(offsets)
        self.ready = True
        self.progress()
        log.info("partitions assigned", extra={"partitions": partitions, "restored": sorted(cps), "offsets": offsets})
        return offsets

    def _redo_daily(self, partition: int, record: Checkpoint | None) -> None:
        """Apply a checkpoint's per-day counts unless the daily store has them (crash between the two)."""
        if self.daily is None:
            return
        key = self._key(partition)
        generation = self.daily_store.generation(key)
        if record is not None:
            self.daily_store.apply(record.state)
            generation = max(generation, orjson.loads(record.state)["generation"])
        self.daily.resume(key, generation)

    def _forget(self, partitions: list[int]) -> None:
        for p in partitions:
            if self.daily is not None:
                self.daily.discard(self._key(p))
            self.engines.pop(p)
            self.owned.pop(p, None)
            self.ledgers.pop(p, None)
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
    def checkpoint(self, partitions: list[int] | None = None, *, wait: bool = True, background: bool = False) -> None:
        """Save the state of ``partitions`` (default: all owned), then commit its offsets.

        The state is copied under the lock; the store write runs on the writer
        thread with ``background=True`` (the periodic checkpoint), and its offsets
        are committed by :meth:`settle` once the write is durable. Any other
        checkpoint (revoke, shutdown) first settles the one in flight, so saves and
        commits stay in order.
        """
        self.settle(wait=wait)
        with self.lock:
            parts = sorted(self.ledgers if partitions is None else set(partitions) & set(self.ledgers))
            # the alert memory: only the evaluator's, and only once it went on from the stored one
            alerts = self.alerts_blob if self.evaluator.leadership.held and self.alerts_resumed else None
            if not parts and alerts is None:
                return
            cps = {
                self._key(p): Checkpoint(
                    self.engines[p].state_blob(events=self.ledgers[p]),
                    self._offsets_of(p),
                )
                for p in parts
            }
            cps.update({self._key(p) + PARTIAL: Checkpoint(partial_blob(self.engines[p])) for p in parts})
            if alerts is not None:
                cps[self._alerts_key()] = Checkpoint(alerts)
            redo = {}
            if self.daily is not None:  # per-day counts since the last checkpoint, saved with it
                redo = {self._key(p) + DAILY: self.daily.take(self._key(p)) for p in parts}
                cps.update({k: Checkpoint(r) for k, r in redo.items() if r is not None})
            if background:
                self.saving = self.writer.submit(self._save, cps, redo)
                return
            offsets = self._save(cps, redo)
        self._commit(offsets, wait=wait)  # never under the lock: see settle()

    def _save(self, cps: dict[str, Checkpoint], redo: dict) -> dict[str, int]:
        self.store.save(cps)  # durable first …
        for record in redo.values():
            if record is not None:
                self.daily_store.apply(record)  # … then the daily store (redone at restart if this fails)
        return {k: v for cp in cps.values() for k, v in cp.offsets.items()}

    def _commit(self, offsets: dict[str, int], *, wait: bool) -> None:
        if self.source is not None:
            self.source.commit(offsets, wait=wait)  # … then Kafka may know
        for key in list(self.dead_letter_keys):  # behind a durable checkpoint: never applied again
            tp, _, offset = key.rpartition(":")
            if tp in offsets and int(offset) < offsets[tp]:
                self.dead_letter_keys.discard(key)
        parts = sorted({int(k.rpartition(":")[2]) for k in offsets})
        log.debug("checkpoint saved", extra={"partitions": parts, "offsets": offsets})

    def settle(self, *, wait: bool = True, commit: bool = True) -> None:
        """Wait for the checkpoint being written, if any, and commit its offsets.

        Raises what the write raised (the loop then resumes from the last durable checkpoint).
        Neither the wait nor the commit holds the lock: kafka-python's rebalance callbacks
        take it on the client's IO thread, and a blocking commit needs that thread, so a
        commit under the lock could wait for a rebalance that waits for the lock.
        """
        with self.lock:
            saving, self.saving = self.saving, None
        if saving is None:
            return
        offsets = saving.result()
        if commit:
            self._commit(offsets, wait=wait)

    # -- the loop ----------------------------------------------------------------
    def _connect(self) -> None:
        from fairwatch.streaming.kafka import DeadLetterProducer, KafkaSource

        if self.kc.client == "confluent":
            from fairwatch.streaming.kafka_confluent import ConfluentSource as Source
        else:
            Source = KafkaSource
        options = dict(self.kc.options)
        if self.kc.group_instance_id:
            options["group_instance_id"] = self.kc.group_instance_id
        self.dead_letters = DeadLetterProducer(
            bootstrap_servers=self.kc.bootstrap_servers,
            topic=self.kc.deadletter_topic,
            client_options=options,
            written=self.dead_letter_keys,
            counts=self.dead_letter_counts,
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
            try:
                self.settle(commit=False)  # durable or failed; restarts seek to the checkpoint anyway
            except Exception as exc:
                log.warning("checkpoint write failed", extra={"error": repr(exc)})
            for part in (self.source, self.dead_letters):
                if part is not None:
                    part.close()
        finally:
            self.source = self.dead_letters = None
            self.closing = False

    def _fresh(self, p: int, values: list[bytes], offsets: list[int], topic: str) -> tuple[list[bytes], list[int]]:
        """Only records at or after the applied position: a stale or repeated fetch is a no-op.

        A gap (records missing before the first one) means the fetch and the checkpoint
        disagree: fail, so the loop restarts from the checkpoint.
        """
        if not values:
            return values, offsets
        pos = self.positions.get(f"{topic}:{p}")
        if pos is None or offsets[0] == pos:
            return values, offsets
        if offsets[0] > pos:
            raise RuntimeError(f"{topic}:{p}: fetched offset {offsets[0]} but the next to apply is {pos}")
        keep = [i for i, off in enumerate(offsets) if off >= pos]
        return [values[i] for i in keep], [offsets[i] for i in keep]

    def _apply(self, batches) -> None:
        with self.lock:
            self._apply_locked(batches)

    def _apply_locked(self, batches) -> None:
        now = time.time()
        kc = self.kc
        for p, b in sorted(batches.items()):
            if p not in self.ledgers:
                continue  # fetched before a revoke: no longer ours
            b.decisions, b.decision_offsets = self._fresh(p, b.decisions, b.decision_offsets, kc.decisions_topic)
            b.outcomes, b.outcome_offsets = self._fresh(p, b.outcomes, b.outcome_offsets, kc.outcomes_topic)
            engine = self.engines[p]
            before = engine.events.copy()
            days = None
            if self.daily is not None:
                self.daily.scope = self._key(p)
                days = EventDays(now)
            rejected = engine.process(
                decisions=b.decisions,
                outcomes=b.outcomes,
                now=now,
                decision_meta=b.decision_meta,
                outcome_meta=b.outcome_meta,
                decision_topic=self.kc.decisions_topic,
                outcome_topic=self.kc.outcomes_topic,
                event_days=days,
            )
            if rejected:
                self.dead_letters.send(rejected)  # raises DeadLetterError: then we do not advance
            delta = engine.events.copy()
            delta.subtract(before)
            self.ledgers.setdefault(p, Counter()).update(+delta)
            if days is not None:
                self._reconcile(p, b, days, rejected)
            self.owned.setdefault(p, set()).update(engine.touched)
            self.positions.update(b.next_offsets)

    def _reconcile(self, p: int, b, days: EventDays, rejected) -> None:
        """Per (topic, partition, event day): the offsets whose messages carry that day and
        their events by result and reason (the monthly export reconciles a month whenever
        it was consumed)."""
        kc = self.kc
        for topic, offsets in ((kc.decisions_topic, b.decision_offsets), (kc.outcomes_topic, b.outcome_offsets)):
            events = Counter({(d, r, why): n for (t, d, r, why), n in days.counts.items() if t == topic})
            if offsets or events:
                dead = Counter(r.reason for r in rejected if r.topic == topic)
                at = days.positions.get(topic)
                if at is None or len(at) != len(offsets):
                    at = np.full(len(offsets), days.processing_day)
                self.daily.count_event_days(topic, p, offsets, at, events, dead, days.processing_day)

    def progress(self) -> None:
        """Group membership or records applied: the daemon is not stuck."""
        self.last_progress = self.clock()

    def health(self) -> tuple[bool, bool, str]:
        now = self.clock()
        stuck = now - self.last_progress > self.kc.liveness_timeout  # neither membership nor records
        alive = now - self.last_loop < 60 and not stuck
        ready = self.ready and self.broker_ok
        broker = "ok" if self.broker_ok else "unreachable"
        detail = f"alive={alive} ready={ready} assigned={sorted(self.ledgers)} broker={broker}"
        if stuck:
            detail += f" stuck: no group membership and no records for {now - self.last_progress:.0f} s"
        return alive, ready, detail

    def _publish(self) -> None:
        with self.lock:  # copies of this replica's statistics; the merge and the actions run outside
            own = {p: partial_of(self.engines[p]) for p in self.ledgers}
            local = local_samples(self.engines[p] for p in self.ledgers)
        ev = self.evaluator.evaluate(own, local)
        snap = ev.export
        if self.alerts is not None and ev.engine is None:
            self.alerts_resumed = False  # another replica acts: its memory is the one to resume from
        elif self.alerts is not None:  # only the evaluator acts, on the whole model
            if self.alerts_resumed or self._resume_alerts():
                before = len(self.alerts.changes)
                self.alerts.judge(ev.whole, ev.engine)
                self.alerts_blob = alert_state.dump(self.alerts)
                if len(self.alerts.changes) != before:
                    self._save_alerts()  # what was acted on is durable before the next evaluation
            snap = snap.with_samples(self.alerts.samples())
        extra = [
            Sample("fairwatch_consumer_lag", {"topic": t, "partition": str(p)}, float(v))
            for (t, p), v in sorted(self.lag.items())
        ]
        extra += [
            Sample("fairwatch_dead_letters_total", {"topic": t, "result": r, "reason": why}, float(n))
            for (t, r, why), n in sorted(self.dead_letter_counts.items())
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
        self._register_secrets()
        with ExitStack() as stack:
            server, _ = serve_metrics(
                self.board,
                host=cfg.metrics.host,
                port=cfg.metrics.port,
                health=self.health,
                routes={"/jobs": self._jobs_route},
                families=FAMILIES,
            )
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
            stack.callback(self.store.close)
            stack.callback(self.evaluator.close)
            if self.daily_store is not None:
                stack.callback(self.daily_store.close)
            stack.callback(self.writer.shutdown)  # before the stores close (callbacks run last-in first-out)
            if install_signals:
                previous = {s: signal.signal(s, self._signal) for s in (signal.SIGINT, signal.SIGTERM)}
                stack.callback(lambda: [signal.signal(s, h) for s, h in previous.items()])
            self._start_alerts(stack)
            self._start_scheduler(stack)
            log.info(
                "daemon started",
                extra={
                    "bootstrap": self.kc.bootstrap_servers,
                    "group": self.kc.group_id,
                    "state": redact(cfg.state.url),
                },
            )
            backoff = 1.0
            while not self.stop.is_set():
                try:
                    self._connect()
                    self._loop()
                    backoff = 1.0
                except Exception as exc:  # the stream failed: back to the last checkpoint, reconnect
                    if self.fatal is not None:  # (raised inside poll: kafka-python 3 wraps it)
                        self._disconnect()
                        raise self.fatal from None
                    log.error(
                        "stream failed; resuming from the last checkpoint",
                        extra={"error": repr(exc), "retry_in_s": backoff},
                    )
                    self._disconnect()
                    self._reset_memory()
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
            log.info("daemon stopped")
        return EXIT_OK

    def _register_secrets(self) -> None:
        """Tokens and passwords this process holds: masked in every log line and endpoint."""
        import os

        for key, value in self.kc.options.items():
            if any(w in key for w in ("password", "secret", "token")) and isinstance(value, str):
                register_secret(value)
        for var in (self.config.alerts.admin.token_env, self.config.alerts.notify.webhook_token_env):
            if var:
                register_secret(os.environ.get(var))

    def _jobs_route(self) -> tuple[str, bytes]:
        jobs = self.scheduler.jobs() if self.scheduler is not None else []
        body = orjson.dumps({"scheduler": self.scheduler is not None, "jobs": jobs}, default=str)
        return "application/json", redact(body.decode()).encode()

    def _start_scheduler(self, stack: ExitStack) -> None:
        """apscheduler jobs; checkpoint and evaluation only wake the loop (never run beside ``_apply``)."""
        cfg = self.config
        sc = cfg.audit.scheduler
        if not sc.enabled:
            return
        from fairwatch.app.export import ExportSettings
        from fairwatch.app.scheduler import FairwatchScheduler, JobContext

        ctx = JobContext(
            daily_db=cfg.audit.daily_path(cfg.state.url),
            export_dir=cfg.audit.export_dir,
            summary_dir=cfg.audit.summary_dir,
            audit_log=cfg.alerts.audit_path if cfg.alerts.enabled else None,
            pipeline_dir=cfg.pipeline_runs.run_dir if cfg.pipeline_runs.enabled else None,
            daily_retention=cfg.audit.daily_retention,
            export_retention=cfg.audit.export_retention,
            settings=ExportSettings(
                cfg.min_decisions, cfg.min_labeled, cfg.confidence_level, dict(cfg.reference_groups)
            ),
            audit=self.alerts.audit if self.alerts is not None else None,
        )
        self.scheduler = FairwatchScheduler(
            checkpoint_interval=cfg.state.checkpoint_interval,
            evaluation_interval=cfg.evaluation_interval,
            wake_checkpoint=self.wake["checkpoint"].set,
            wake_evaluate=self.wake["evaluate"].set,
            context=ctx if ctx.daily_db else None,
            monthly_export=sc.monthly_export,
            weekly_summary=sc.weekly_summary,
            retention=sc.retention,
            misfire_grace_time=sc.misfire_grace_time,
            catch_up=sc.catch_up,
        )
        self.scheduler.start()
        stack.callback(self.scheduler.shutdown)

    def _start_alerts(self, stack: ExitStack) -> None:
        """Tier policy, actions and rollback on every evaluation; pipeline runs for Tier ≥ 2."""
        cfg = self.config
        if not cfg.alerts.enabled:
            return
        from fairwatch.alerts.loop import AlertLoop

        enqueue = None
        if cfg.pipeline_runs.enabled:
            from fairwatch.intervention.trigger import PipelineQueue

            self.pipelines = PipelineQueue(
                max_concurrent=cfg.pipeline_runs.max_concurrent, run_dir=cfg.pipeline_runs.run_dir
            )
            enqueue = self.pipelines.enqueue
        if enqueue is not None:
            queue = enqueue

            def enqueue(incident):  # every pipeline run lands in the audit log
                run_id = queue(incident)
                if run_id is not None:
                    self.alerts.audit.append(
                        "pipeline.start", run_id=run_id, incident=incident.get("id"), model=incident.get("model")
                    )
                return run_id

        self.alerts = AlertLoop(
            cfg.alerts,
            enqueue=enqueue,
            confidence=cfg.confidence_level,
            interval=cfg.evaluation_interval,
            reference_groups=dict(cfg.reference_groups),
        )
        stack.callback(self.alerts.close)
        self._audit_config()
        admin = cfg.alerts.admin
        if admin.enabled:
            import os

            from fairwatch.alerts.admin import serve_admin

            token = os.environ.get(admin.token_env, "")
            if not token:
                raise ConfigError("alerts.admin.token_env", f"the admin API is enabled but ${admin.token_env} is empty")
            server = serve_admin(self.alerts, token=token, host=admin.host, port=admin.port)
            stack.callback(server.server_close)
            stack.callback(server.shutdown)

    def _audit_config(self) -> None:
        """A ``config.loaded`` entry at start, flagged ``changed`` when it differs from the last one."""
        import hashlib

        canonical = orjson.dumps(self.config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(canonical).hexdigest()
        audit = self.alerts.audit
        last = next((e for e in reversed(audit.entries()) if e.get("kind") == "config.loaded"), None)
        audit.append("config.loaded", sha256=digest, changed=last is not None and last.get("sha256") != digest)

    def _joined(self) -> bool:
        joined = getattr(self.source, "joined", None)
        return joined() if callable(joined) else self.ready  # ready: an assignment (maybe empty) arrived

    def _due(self, name: str, now: float, at: float) -> bool:
        """Scheduler on: its flag says when; off: the loop's own timer."""
        if self.scheduler is None:
            return now >= at
        return self.wake[name].is_set()

    def _loop(self) -> None:
        cfg = self.config
        next_checkpoint = next_eval = next_probe = time.monotonic()
        flowing = False  # records arrived since the last lag probe: the broker answers
        joining = time.monotonic()  # not yet a stable member since then
        while not self.stop.is_set():
            self.last_loop = now = time.monotonic()
            batches = self.source.poll(timeout_ms=200)
            if self.fatal is not None:  # (kafka-python 2 logs a rebalance listener's error and goes on)
                raise self.fatal
            if batches:
                self._apply(batches)
                flowing = True
                self.progress()
            if self._joined():
                joining = now
                self.progress()
            elif now - joining > self.kc.join_timeout:  # the run loop reconnects with backoff
                raise RuntimeError(f"consumer group join did not complete in {self.kc.join_timeout:g} s")
            if self.saving is not None and self.saving.done():
                self.settle()
            if now >= next_probe:
                try:
                    self.lag = self.source.lag(self.positions, cached=flowing)
                    flowing = False
                    self.broker_ok = True
                except Exception as exc:
                    if self.broker_ok:
                        log.warning("broker unreachable", extra={"error": repr(exc)})
                    self.broker_ok = False
                next_probe = now + 5.0
            if self._due("checkpoint", now, next_checkpoint) and self.broker_ok and self.saving is None:
                self.wake["checkpoint"].clear()
                self.checkpoint(background=True)
                next_checkpoint = now + cfg.state.checkpoint_interval
            if self._due("evaluate", now, next_eval):
                self.wake["evaluate"].clear()
                if self.ready:  # after a reconnect, not before the state is restored: counters never drop to 0
                    self._publish()
                next_eval = now + cfg.evaluation_interval
        # Drain: final checkpoint + commit, bounded by the client's request timeout.
        try:
            self.checkpoint()
        finally:
            self._publish()
            self._disconnect()


class CheckpointError(FairwatchError, RuntimeError):
    """A checkpoint in the state store that cannot be read: names its key and the reason."""


def _unrestorable(key: str, exc: Exception) -> Exception:
    """The error that stops the daemon for the checkpoint ``key`` that failed with ``exc``: a
    :class:`ConfigError` when the configuration changed under it (windows, buckets, lateness,
    label maturity, or a checkpoint of another format), else a :class:`CheckpointError`."""
    if isinstance(exc, CheckpointMismatch):
        return ConfigError(
            "state.url",
            f"checkpoint {key!r}: {exc}. Go back to the settings it was taken with, or start from a fresh"
            " state: another state.url or kafka.group_id (the counts start again from the oldest retained event)",
        )
    return CheckpointError(
        f"checkpoint {key!r} in the state store cannot be read ({type(exc).__name__}: {exc}); nothing was"
        " consumed for its partition. Restore the state store from a backup, or start from a fresh state"
    )


def run(config: Config) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    return Daemon(config).run()
