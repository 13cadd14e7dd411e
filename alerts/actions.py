"""Actions by tier, and the incidents they belong to (docs/alerts.md).

An incident is one (model, metric, attribute) from its first tier ≥ 1 in any
window until every window is back to 0 (or insufficient). When its highest tier
rises the responder acts once per tier:

* tier 1 → notify the ML engineer (an Alertmanager alert, ``FairnessTier1``);
* tier 2 → page product owner + compliance (``FairnessTier2``) and enqueue the
  intervention pipeline;
* tier 3 → immediate rollback (:class:`~alerts.rollback.RollbackManager`),
  executive escalation (``FairnessTier3``) and the pipeline.

The pipeline is reached through ``enqueue`` — any callable taking the incident
dict (``fairwatch.intervention.trigger.PipelineQueue.enqueue``), so this layer never
imports ``intervention``. Notifications go through :class:`~alerts.notify.Notifier`
and never block.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .audit import ACTION, TIER_CHANGE, AuditSink, MemoryAuditLog
from .notify import Notifier, make_alert
from .rollback import RollbackManager, RollbackRecord
from .tiers import TierChange

__all__ = ["Incident", "IncidentBook", "Responder", "Enqueue"]

log = logging.getLogger("fairwatch.alerts.actions")

TIER_ACTIONS = {
    1: ("notify",),
    2: ("page", "pipeline"),
    3: ("rollback", "escalate", "pipeline"),
}


class Enqueue(Protocol):
    def __call__(self, incident: dict[str, Any]) -> str | None: ...


@dataclass
class Incident:
    id: str
    model: str
    metric: str
    attribute: str
    first_seen: float
    last_seen: float
    tier: int = 0  # current highest tier over windows
    max_tier: int = 0
    status: str = "open"
    closed_at: float | None = None
    windows: dict[str, int] = field(default_factory=dict)
    value: float | None = None
    ci: tuple[float, float] | None = None
    reason: str = ""
    actions: list[dict[str, Any]] = field(default_factory=list)
    acted: set[int] = field(default_factory=set)
    last_sent: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "metric": self.metric,
            "attribute": self.attribute,
            "status": self.status,
            "tier": self.tier,
            "max_tier": self.max_tier,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "closed_at": self.closed_at,
            "windows": dict(self.windows),
            "value": self.value,
            "ci": list(self.ci) if self.ci else None,
            "reason": self.reason,
            "actions": list(self.actions),
        }

    def labels(self, window: str | None = None) -> dict[str, str]:
        worst = window or max(self.windows, key=lambda w: self.windows[w], default="")
        return {
            "model": self.model,
            "metric": self.metric,
            "attribute": self.attribute,
            "window": worst,
            "incident": self.id,
        }


class IncidentBook:
    """Open and closed incidents, keyed by (model, metric, attribute)."""

    def __init__(self, *, keep_closed: int = 1000) -> None:
        self.open: dict[tuple[str, str, str], Incident] = {}
        self.closed: list[Incident] = []
        self.keep_closed = keep_closed
        self._seq = 0
        self._lock = threading.Lock()

    def apply(self, change: TierChange) -> tuple[Incident | None, bool]:
        """Record a tier change; returns (incident, just_closed)."""
        key = (change.model, change.metric, change.attribute)
        with self._lock:
            inc = self.open.get(key)
            if inc is None:
                if change.tier < 1:
                    return None, False
                self._seq += 1
                inc = Incident(
                    f"{change.model}/{change.metric}/{change.attribute}/{self._seq}",
                    change.model,
                    change.metric,
                    change.attribute,
                    change.at,
                    change.at,
                )
                self.open[key] = inc
            inc.windows[change.window] = change.tier
            inc.last_seen = change.at
            inc.tier = max(inc.windows.values())
            if change.tier >= inc.tier and change.tier >= 1:
                inc.value, inc.ci, inc.reason = change.value, change.ci, change.reason
            inc.max_tier = max(inc.max_tier, inc.tier)
            if inc.tier < 1:
                inc.status, inc.closed_at = "closed", change.at
                del self.open[key]
                self.closed.append(inc)
                del self.closed[: -self.keep_closed]
                return inc, True
            return inc, False

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self.open.values()) if status != "closed" else []
            if status != "open":
                items += self.closed
        return [i.as_dict() for i in sorted(items, key=lambda i: i.first_seen)]


class Responder:
    """Turns tier changes into incidents and actions; never blocks on I/O it does not own."""

    def __init__(
        self,
        *,
        notifier: Notifier | None = None,
        rollback: RollbackManager | None = None,
        enqueue: Enqueue | Callable[[dict[str, Any]], str | None] | None = None,
        audit: AuditSink | None = None,
        pipeline: dict[str, Any] | None = None,
        resend_interval: float = 60.0,
    ) -> None:
        self.notifier = notifier or Notifier()
        self.rollback = rollback
        self.enqueue = enqueue
        self.audit = audit or MemoryAuditLog()
        self.pipeline = dict(pipeline or {})
        self.resend_interval = resend_interval
        self.incidents = IncidentBook()
        self.pipeline_enqueued: list[str] = []
        if rollback is not None and rollback.communicate is None:
            rollback.communicate = self._communicate_rollback

    def handle(
        self, changes: list[TierChange], *, now: float, versions: dict[str, dict[str, int]] | None = None
    ) -> None:
        for ch in changes:
            self.audit.append(TIER_CHANGE, **ch.as_dict())
            inc, closed = self.incidents.apply(ch)
            if inc is None:
                continue
            if closed:
                self._action(inc, "resolve", now)
                self.notifier.send(self._alert(inc, max(inc.acted or {1}), resolved_at=now))
                continue
            for tier in range(1, inc.tier + 1):
                if tier in inc.acted:
                    continue
                inc.acted.add(tier)
                if tier == inc.tier:  # lower tiers' actions are subsumed by the higher one
                    for action in TIER_ACTIONS[tier]:
                        self._do(action, inc, tier, now, versions or {})
        self._resend(now)

    # -- actions -----------------------------------------------------------------------------
    def _do(self, action: str, inc: Incident, tier: int, now: float, versions: dict[str, dict[str, int]]) -> None:
        if action in ("notify", "page", "escalate"):
            ok = self.notifier.send(self._alert(inc, tier))
            inc.last_sent = now
            self._action(inc, action, now, tier=tier, queued=ok)
        elif action == "pipeline":
            if self.enqueue is None:
                self._action(inc, "pipeline", now, result="no pipeline configured")
                return
            payload = {
                "id": inc.id,
                "model": inc.model,
                "metric": inc.metric,
                "attribute": inc.attribute,
                "tier": tier,
                "windows": dict(inc.windows),
                "value": inc.value,
                "groups": [],
                "pipeline": dict(self.pipeline),
            }
            try:
                run = self.enqueue(payload)
            except Exception as exc:  # the pipeline is another component; keep monitoring
                log.exception("enqueueing the pipeline for %s failed", inc.id)
                self._action(inc, "pipeline", now, result="error", error=str(exc))
                return
            self.pipeline_enqueued.append(inc.id)
            self._action(inc, "pipeline", now, run=run)
        elif action == "rollback":
            if self.rollback is None:
                self._action(inc, "rollback", now, result="no rollback configured")
                return
            try:
                rec = self.rollback.rollback(
                    inc.id,
                    inc.model,
                    now=now,
                    reason=f"tier 3 {inc.metric} on {inc.attribute}",
                    evidence={
                        "metric": inc.metric,
                        "attribute": inc.attribute,
                        "windows": dict(inc.windows),
                        "window": min(inc.windows, key=lambda w: (-inc.windows[w], _secs(w))),
                        "value": inc.value,
                        "ci": inc.ci,
                        "reason": inc.reason,
                    },
                    versions=versions.get(inc.model, {}),
                )
            except KeyError as exc:
                self._action(inc, "rollback", now, result="not configured", error=str(exc.args[0]))
                return
            self._action(
                inc, "rollback", now, result=rec.status, target=rec.target, previous=rec.previous, reason=rec.reason
            )

    def _action(self, inc: Incident, kind: str, now: float, **detail: Any) -> None:
        entry = {"action": kind, "at": now, **detail}
        inc.actions.append(entry)
        self.audit.append(ACTION + kind, incident=inc.id, model=inc.model, **detail)

    def _alert(self, inc: Incident, tier: int, *, resolved_at: float | None = None) -> dict[str, Any]:
        val = "–" if inc.value is None else f"{inc.value:.3f}"
        cfg = self.notifier.config
        return make_alert(
            inc.labels(),
            tier=tier,
            summary=f"Tier {tier} fairness incident {inc.id}: {inc.metric} on {inc.attribute} = {val}",
            description=inc.reason,
            starts_at=inc.first_seen,
            ends_at=resolved_at,
            generator_url=cfg.generator_url,
        )

    def _resend(self, now: float) -> None:
        for inc in list(self.incidents.open.values()):
            if inc.tier >= 1 and now - inc.last_sent >= self.resend_interval:
                inc.last_sent = now
                self.notifier.send(self._alert(inc, inc.tier))

    def _communicate_rollback(self, rec: RollbackRecord) -> None:
        inc = next((i for i in self.incidents.open.values() if i.id == rec.incident), None)
        if inc is None:
            inc = next((i for i in self.incidents.closed if i.id == rec.incident), None)
        if inc is not None:
            inc.actions.append({"action": "rollback." + rec.status, **rec.as_dict()})
        alert = make_alert(
            {"model": rec.model, "flag": rec.flag, "incident": rec.incident},
            tier=3,
            summary=f"Rollback of {rec.model} ({rec.flag} → {rec.target}): {rec.status}",
            description=f"{rec.reason} {rec.verification}".strip(),
            starts_at=rec.executed_at or 0.0,
        )
        alert["labels"]["alertname"] = "FairnessRollback"
        self.notifier.send(alert)


def _secs(window: str) -> float:
    from fairwatch.monitor.windows import parse_duration

    try:
        return parse_duration(window)
    except ValueError:  # the sequential policy's machines have no window length
        return 0.0
