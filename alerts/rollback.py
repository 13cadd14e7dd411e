"""The playbook's rollback procedure: detect → assess → decide → execute → verify → communicate.

One rollback per incident (idempotent), at most one per flag per ``cooldown``,
never to the version already live, dry-run supported; every step is appended to
the audit log. Verification runs on later evaluations: it watches the engine's
per-version decision counts (``engine.models[model].versions``) until the share of
new decisions carrying the rollback version reaches ``verify_version_share``, and
the policy's tier for the incident's (window, metric, attribute) is back to 0 on a
window that holds only post-rollback decisions.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairwatch.monitor.windows import parse_duration

from .audit import FLAG_RESTORE, ROLLBACK, AuditSink, MemoryAuditLog
from .config import RollbackConfig
from .flags import FlagStore, FlagStoreError

__all__ = ["RollbackManager", "RollbackRecord", "NOT_CONFIGURED", "NO_PREVIOUS"]

log = logging.getLogger("fairwatch.alerts.rollback")

NOT_CONFIGURED = "model {model!r} has no flag in alerts.rollback.models; configured: {known}"
NO_PREVIOUS = "no earlier rollback of flag {flag!r} is recorded; pass --to VERSION"


@dataclass
class RollbackRecord:
    """What happened to one incident's rollback; ``status`` moves forward only."""

    incident: str
    model: str
    flag: str
    target: str
    previous: str | None = None
    status: str = "detected"  # detected|skipped|dry-run|failed|verifying|verified|not-recovered
    reason: str = ""
    executed_at: float | None = None  # event time
    dry_run: bool = False
    window: str | None = None
    metric: str | None = None
    attribute: str | None = None
    verification: dict[str, Any] = field(default_factory=dict)
    _base: Counter | None = None
    _grace_base: Counter | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "incident": self.incident,
            "model": self.model,
            "flag": self.flag,
            "target": self.target,
            "previous": self.previous,
            "status": self.status,
            "reason": self.reason,
            "executed_at": self.executed_at,
            "dry_run": self.dry_run,
            "verification": dict(self.verification),
        }


class RollbackManager:
    """Runs rollbacks through a :class:`~alerts.flags.FlagStore` and verifies them."""

    def __init__(
        self,
        config: RollbackConfig,
        store: FlagStore,
        *,
        audit: AuditSink | None = None,
        communicate: Callable[[RollbackRecord], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.audit = audit or MemoryAuditLog()
        self.communicate = communicate
        self.records: dict[str, RollbackRecord] = {}
        self.last_by_flag: dict[str, float] = {}
        self.executed: Counter[tuple[str, str]] = Counter()  # (model, flag) -> rollbacks
        self._lock = threading.RLock()
        self._state_path = Path(config.state_path) if config.state_path else None

    # -- helpers -----------------------------------------------------------------------
    def flag_for(self, model: str) -> tuple[str, str]:
        m = self.config.models.get(model)
        if m is None:
            raise KeyError(NOT_CONFIGURED.format(model=model, known=sorted(self.config.models)))
        return m.flag, m.rollback_to

    def _save_state(self, flag: str, previous: str | None, target: str, incident: str) -> None:
        if self._state_path is None:
            return
        state = self.load_state()
        state[flag] = {"previous": previous, "rolled_back_to": target, "incident": incident, "at": time.time()}
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self._state_path.name}.", dir=self._state_path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2)
        os.replace(tmp, self._state_path)

    def load_state(self) -> dict[str, Any]:
        if self._state_path is None or not self._state_path.exists():
            return {}
        return json.loads(self._state_path.read_text(encoding="utf-8"))

    def _step(self, step: str, rec: RollbackRecord, **fields: Any) -> None:
        self.audit.append(ROLLBACK + step, incident=rec.incident, model=rec.model, flag=rec.flag, **fields)

    # -- the procedure ----------------------------------------------------------------------
    def rollback(
        self,
        incident: str,
        model: str,
        *,
        now: float,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
        versions: Mapping[str, int] | None = None,
        dry_run: bool | None = None,
        target: str | None = None,
        manual: bool = False,
    ) -> RollbackRecord:
        """Detect → assess → decide → execute for ``incident``; verification follows later."""
        with self._lock:
            existing = self.records.get(incident)
            if existing is not None:
                self.audit.append(
                    "rollback.decide",
                    incident=incident,
                    model=model,
                    decision="skip",
                    why="already handled for this incident",
                    status=existing.status,
                )
                return existing
            flag, default_target = self.flag_for(model)
            ev = dict(evidence or {})
            rec = RollbackRecord(
                incident,
                model,
                flag,
                target or default_target,
                window=ev.get("window"),
                metric=ev.get("metric"),
                attribute=ev.get("attribute"),
            )
            self.records[incident] = rec
            dry = self.config.dry_run if dry_run is None else dry_run
            rec.dry_run = dry
            self._step("detect", rec, at=now, evidence=ev, manual=manual, reason=reason)
            # assess: what is live, what would change
            try:
                live = self.store.current(flag)
            except FlagStoreError as exc:
                rec.status, rec.reason = "failed", f"cannot read flag: {exc}"
                self._step("assess", rec, error=str(exc))
                self._finish(rec)
                return rec
            rec.previous = live
            self._step(
                "assess",
                rec,
                live=live,
                target=rec.target,
                store=self.store.describe(),
                decisions_by_version=dict(versions or {}),
            )
            # decide
            why = None
            if not self.config.enabled and not manual:
                why = "automatic rollback disabled (alerts.rollback.enabled=false)"
            elif live == rec.target:
                why = f"version {live!r} is already live; never roll back to the live version"
            else:
                last = self.last_by_flag.get(flag)
                if last is not None and now - last < self.config.cooldown and not manual:
                    why = f"cooldown: last rollback of {flag!r} {now - last:.0f} s ago (< {self.config.cooldown:.0f} s)"
            if why is not None:
                rec.status, rec.reason = "skipped", why
                self._step("decide", rec, decision="skip", why=why)
                self._finish(rec)
                return rec
            self._step("decide", rec, decision="dry-run" if dry else "execute", target=rec.target, previous=live)
            # execute
            try:
                change = self.store.set_variant(flag, rec.target, reason=f"{reason} [incident {incident}]", dry_run=dry)
            except FlagStoreError as exc:
                rec.status, rec.reason = "failed", str(exc)
                self._step("execute", rec, ok=False, error=str(exc))
                self._finish(rec)
                return rec
            self._step("execute", rec, ok=True, change=change.as_dict())
            if dry or not change.changed:
                rec.status = "dry-run" if dry else "skipped"
                rec.reason = "dry run: flag not changed" if dry else "flag store made no change"
                self._finish(rec)
                return rec
            rec.status, rec.executed_at = "verifying", now
            rec._base = Counter(versions or {})
            self.last_by_flag[flag] = now
            self.executed[(model, flag)] += 1
            self._save_state(flag, live, rec.target, incident)
            log.warning("rolled back %s: flag %s %s -> %s (incident %s)", model, flag, live, rec.target, incident)
            return rec

    def verify(
        self,
        versions: Mapping[str, Mapping[str, int]],
        now: float,
        tier_of: Callable[[RollbackRecord], int | None],
    ) -> list[RollbackRecord]:
        """One verification round for every rollback being verified; returns the finished ones.

        ``versions`` is ``{model: Counter(version → decisions)}``; ``tier_of(record)``
        the policy's current tier for the incident's key (``None`` = not yet judgeable).
        """
        done = []
        with self._lock:
            for rec in self.records.values():
                if rec.status != "verifying" or rec.executed_at is None:
                    continue
                counts = Counter(versions.get(rec.model, {}))
                if rec._grace_base is None:
                    if now - rec.executed_at < self.config.verify_grace:
                        continue
                    rec._grace_base = counts
                    continue
                delta = counts - rec._grace_base
                total = sum(delta.values())
                share = delta[rec.target] / total if total else None
                carry = share is not None and total >= 20 and share >= self.config.verify_version_share
                window_s = _window_seconds(rec.window)
                tier = tier_of(rec) if now - rec.executed_at >= window_s + self.config.verify_grace else None
                recovered = tier is not None and tier == 0
                rec.verification = {
                    "decisions_since": total,
                    "rollback_version_share": share,
                    "carries_rollback_version": carry,
                    "tier": tier,
                    "recovered": recovered,
                    "at": now,
                    "seconds_since_rollback": now - rec.executed_at,
                }
                if carry and recovered:
                    rec.status = "verified"
                elif now - rec.executed_at >= self.config.verify_timeout:
                    rec.status = "not-recovered"
                else:
                    continue
                self._step("verify", rec, **rec.verification, ok=rec.status == "verified")
                self._finish(rec)
                done.append(rec)
        return done

    def _finish(self, rec: RollbackRecord) -> None:
        """communicate: record and tell people (the callback sends the notification)."""
        self._step("communicate", rec, status=rec.status, reason=rec.reason, verification=rec.verification)
        if self.communicate is not None:
            try:
                self.communicate(rec)
            except Exception:  # a failing notifier must not undo a rollback
                log.exception("communicating rollback of %s failed", rec.incident)

    # -- people ------------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        out = []
        for model, m in sorted(self.config.models.items()):
            try:
                live: str | None = self.store.current(m.flag)
                err = None
            except FlagStoreError as exc:
                live, err = None, str(exc)
            out.append(
                {
                    "model": model,
                    "flag": m.flag,
                    "live": live,
                    "rollback_to": m.rollback_to,
                    "rolled_back": live == m.rollback_to,
                    "error": err,
                    "last_rollback": self.load_state().get(m.flag),
                    "store": self.store.describe(),
                }
            )
        return out

    def restore(self, model: str, *, reason: str, to: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Serve the version from before the last recorded rollback again (or ``to``)."""
        flag, _ = self.flag_for(model)
        target = to or (self.load_state().get(flag) or {}).get("previous")
        if not target:
            raise ValueError(NO_PREVIOUS.format(flag=flag))
        change = self.store.set_variant(flag, target, reason=reason, dry_run=dry_run)
        self.audit.append(FLAG_RESTORE, model=model, flag=flag, change=change.as_dict())
        return change.as_dict()


def _window_seconds(window: str | None) -> float:
    """Length of an incident's window; 0 for the sequential policy's (it judges new counts only)."""
    try:
        return parse_duration(window) if window else 0.0
    except ValueError:
        return 0.0
