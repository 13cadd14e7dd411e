"""A minimal append-only audit sink: one JSON object per line.

The interface is :meth:`AuditLog.append` (``kind`` plus keyword fields); the
hash-chained audit log of DESIGN §8 replaces this class behind the same call.

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

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

__all__ = ["AuditSink", "AuditLog", "MemoryAuditLog"]


class AuditSink(Protocol):
    def append(self, kind: str, **fields: Any) -> dict[str, Any]: ...


class AuditLog:
    """Appends ``{"seq", "at", "kind", ...fields}`` lines; fsyncs each write when ``fsync``."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._seq = 0
        if self.path.exists():
            with open(self.path, "rb") as fh:
                self._seq = sum(1 for _ in fh)

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, "at": time.time(), "kind": kind, **fields}
            line = json.dumps(entry, default=str, sort_keys=False) + "\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
        return entry

    def entries(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return [json.loads(line) for line in fh if line.strip()]
        except FileNotFoundError:
            return []


class MemoryAuditLog:
    """The same interface, in memory (tests, benchmarks)."""

    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            entry = {"seq": len(self._entries) + 1, "at": time.time(), "kind": kind, **fields}
            self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)
