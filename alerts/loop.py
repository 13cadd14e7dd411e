"""The alerting side of one evaluation: snapshot → policy → actions → verification.

:class:`AlertLoop` is what the daemon, the demo and the detection benchmark call
after each engine snapshot; it returns the snapshot with ``fairness_alert_tier``
and ``fairness_rollbacks_total`` added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fairwatch.monitor.snapshot import Sample, Snapshot
from fairwatch.monitor.windows import parse_duration

from .actions import Responder
from .audit import AuditLog, AuditSink
from .baseline import BaselineLearner, BaselineStore
from .config import AlertsConfig
from .flags import FlagStore, flag_store_from_config
from .notify import Notifier
from .policy import Policy
from .rollback import RollbackManager, RollbackRecord
from .tiers import TierChange

__all__ = ["AlertLoop"]

log = logging.getLogger("fairwatch.alerts")


class AlertLoop:
    """Policy + responder + rollback manager, wired from one :class:`AlertsConfig`."""

    def __init__(
        self,
        config: AlertsConfig | None = None,
        *,
        store: FlagStore | None = None,
        audit: AuditSink | None = None,
        enqueue: Callable[[dict[str, Any]], str | None] | None = None,
        notifier: Notifier | None = None,
        confidence: float = 0.95,
        interval: float | None = None,
        reference_groups: dict[str, str] | None = None,
    ) -> None:
        """``interval``: the evaluation interval (s) the false-alarm budget is converted with
        (default ``alerts.evaluation_interval``); ``reference_groups``: DI reference group per attribute."""
        self.config = cfg = config or AlertsConfig()
        self.audit = audit if audit is not None else AuditLog(cfg.audit_path)
        self.baselines = BaselineStore(cfg.baseline_path, defaults={m: e.values for m, e in cfg.baselines.items()})
        self.policy = Policy(
            cfg,
            baselines=self.baselines,
            confidence=confidence,
            interval=interval or cfg.evaluation_interval,
            reference_groups=reference_groups,
        )
        self.notifier = notifier or Notifier(cfg.notify)
        self.rollback: RollbackManager | None = None
        if cfg.rollback.models:
            fs = store if store is not None else flag_store_from_config(cfg.rollback.flag_store)
            self.rollback = RollbackManager(cfg.rollback, fs, audit=self.audit)
        self.responder = Responder(
            notifier=self.notifier,
            rollback=self.rollback,
            enqueue=enqueue,
            audit=self.audit,
            pipeline=cfg.pipeline,
            resend_interval=cfg.notify.resend_interval,
        )
        self.learners = {
            m: BaselineLearner(start=s, end=e, window=self._longest_window())
            for m, (s, e) in cfg.learn_baseline.items()
        }
        self.changes: list[TierChange] = []
        self.verified: list[RollbackRecord] = []

    def _longest_window(self) -> str:
        wins = set(self.config.policy.confirm) | set(self.config.policy.confirm.values())
        return max(wins, key=parse_duration) if wins else "24h"

    def evaluate(self, snap: Snapshot, engine: Any | None = None) -> Snapshot:
        """Judge one snapshot, act, verify rollbacks; returns the snapshot with alert samples."""
        self.judge(snap, engine)
        return snap.with_samples(self.samples())

    def judge(self, snap: Snapshot, engine: Any | None = None) -> None:
        """Judge one snapshot (its counters and gauges describe the whole model), act, verify rollbacks."""
        now = max(snap.event_time.values(), default=snap.created)
        self._learn(snap)
        counts = None
        if engine is not None:

            def counts(model: str, window: str):
                return engine.window_counts(model, window, labeled=True)

        changes = self.policy.evaluate(snap, label_counts=counts)
        versions = {m: dict(st.versions) for m, st in engine.models.items()} if engine is not None else {}
        self.changes.extend(changes)
        self.responder.handle(changes, now=now, versions=versions)
        if self.rollback is not None:
            self.verified.extend(self.rollback.verify(versions, now, self._tier_of))

    def _tier_of(self, rec: RollbackRecord) -> int | None:
        if rec.window is None or rec.metric is None or rec.attribute is None:
            return None
        st = self.policy.last.get((rec.model, rec.window, rec.metric, rec.attribute))
        return None if st is None or st[0] < 0 else st[0]

    def _learn(self, snap: Snapshot) -> None:
        for model, learner in list(self.learners.items()):
            learner.observe(snap)
            if learner.done(model):
                values = learner.result(model)
                self.baselines.learned(model, values)
                self.audit.append(
                    "baseline.learned",
                    model=model,
                    values=values,
                    period=[learner.start, learner.end],
                    window=learner.window,
                )
                del self.learners[model]

    def samples(self) -> list[Sample]:
        out = self.policy.samples()
        if self.rollback is not None:
            for model, flag in sorted({(m, f.flag) for m, f in self.config.rollback.models.items()}):
                out.append(
                    Sample(
                        "fairness_rollbacks_total",
                        {"model": model, "flag": flag},
                        float(self.rollback.executed[(model, flag)]),
                    )
                )
        return out

    def incidents(self, status: str | None = None) -> list[dict[str, Any]]:
        return self.responder.incidents.list(status)

    def close(self) -> None:
        self.notifier.close()
