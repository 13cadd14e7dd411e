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

__all__ = ["AuditSink", "AuditLog", "MemoryAuditLog"]
