"""The audit sink of alerts, rollbacks and baselines: the hash-chained log of :mod:`fairwatch.monitor.audit`.

``AuditLog.append(kind, **fields)`` writes one chained, fsynced JSONL entry;
``MemoryAuditLog`` keeps the same chain in memory. Verify a log with
``fairwatch audit verify --log PATH``.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "audit.jsonl")
>>> log = AuditLog(path)
>>> log.append("rollback.execute", incident="inc-1", flag="loan-model", variant="v2")["seq"]
1
>>> [e["kind"] for e in AuditLog(path).entries()]
['rollback.execute']
>>> MemoryAuditLog().append("x", a=1)["a"]
1
"""

from __future__ import annotations

from fairwatch.monitor.audit import AuditLog, AuditSink, MemoryAuditLog

__all__ = [
    "AuditSink",
    "AuditLog",
    "MemoryAuditLog",
    "TIER_CHANGE",
    "ACTION",
    "ROLLBACK",
    "ROLLBACK_EXECUTE",
    "FLAG_RESTORE",
    "ADMIN_ROLLBACK",
    "INCIDENT_KINDS",
    "ROLLBACK_KINDS",
]

# The kinds of audit entry the alert layer writes (docs/files.md, "Audit log"). A kind
# ending in "." is a prefix: "action.<what>" (notify, rollback, pipeline, …) and
# "rollback.<step>" (detect, assess, decide, execute, verify, communicate).
TIER_CHANGE = "tier.change"
ACTION = "action."
ROLLBACK = "rollback."
ROLLBACK_EXECUTE = ROLLBACK + "execute"
FLAG_RESTORE = "flag.restore"
ADMIN_ROLLBACK = "admin.rollback"
#: entries that make up an incident's history; those of rollbacks and restores
INCIDENT_KINDS = (TIER_CHANGE, ACTION)
ROLLBACK_KINDS = (ROLLBACK, FLAG_RESTORE, ADMIN_ROLLBACK)
