"""The append-only, hash-chained audit log (docs/files.md, "Audit log").

One JSON object per line::

    {"seq": 7, "ts": 1793...., "kind": "rollback.execute", <fields…>, "prev_hash": "…", "hash": "…"}

``hash`` is the SHA-256 (hex) of the canonical encoding of the entry without
``hash`` — keys sorted, no whitespace, UTF-8 — so it covers ``prev_hash``, the
previous entry's hash (64 zeros for the first entry). Editing, reordering,
inserting or removing an entry breaks the chain at that entry; removing entries
from the *end* is caught by the head file ``<log>.head`` (the last seq and hash,
replaced atomically after every append), and every monthly export records the
head in its manifest.

The fields are the entry's other keys (so ``entry["tier"]`` reads a field);
``seq``, ``ts``, ``kind``, ``prev_hash`` and ``hash`` are reserved. Every append
is fsynced before it returns. Appends hold an exclusive ``flock`` on the file and
re-read the tail under it, so a CLI command (``fairwatch baseline set``) may
append while the daemon runs; a torn last line (a crash mid-write, never
acknowledged) is cut off and recorded as an ``audit.recovered`` entry.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "audit.jsonl")
>>> log = AuditLog(path)
>>> e = log.append("rollback.execute", incident="inc-1", flag="loan-model", variant="v2")
>>> e["seq"], e["kind"], e["variant"], e["prev_hash"] == GENESIS
(1, 'rollback.execute', 'v2', True)
>>> log.append("tier.change", model="m", tier=3)["prev_hash"] == e["hash"]
True
>>> verify(path).ok
True
>>> from pathlib import Path
>>> text = Path(path).read_text()
>>> _ = Path(path).write_text(text.replace('"v2"', '"v1"'))
>>> r = verify(path)
>>> r.ok, r.seq, r.reason
(False, 1, 'hash mismatch: the entry was edited')
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "AuditSink",
    "AuditLog",
    "MemoryAuditLog",
    "VerifyResult",
    "verify",
    "head_path",
    "entry_hash",
    "read_head",
    "GENESIS",
    "RESERVED",
]

log = logging.getLogger("fairwatch.audit")

GENESIS = "0" * 64
RESERVED = frozenset({"seq", "ts", "kind", "prev_hash", "hash"})

MSG_RESERVED = "audit field {name!r} is reserved (reserved: seq, ts, kind, prev_hash, hash)"
MSG_KIND = "audit kind: expected a non-empty string, got {value!r}"
# verify reasons (tests match these)
R_JSON = "not a JSON object"
R_TORN = "torn last line (no newline): an interrupted write"
R_SEQ = "seq {got!r} where {want} was expected: an entry was removed, inserted or reordered"
R_PREV = "prev_hash does not match the hash of entry {prev}: an entry before it was removed, inserted or reordered"
R_HASH = "hash mismatch: the entry was edited"
R_FIELDS = "missing field {name!r}"
R_TRUNCATED = "the log ends at seq {last} but its head file records seq {head}: entries were removed from the end"
R_HEAD = "the head file's hash does not match entry {seq}: the log or its head was rewritten"


class AuditSink(Protocol):
    def append(self, kind: str, **fields: Any) -> dict[str, Any]: ...


def _jsonable(value: Any) -> Any:
    """The value as it will read back from the file (``default=str``, NaN kept)."""
    return json.loads(json.dumps(value, default=str))


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes the hash covers: every key except ``hash``, sorted, compact, UTF-8."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 (hex) of :func:`canonical`.

    >>> entry_hash({"seq": 1, "ts": 0.0, "kind": "x", "prev_hash": GENESIS})[:16]
    '355c7489cc512fe3'
    """
    return hashlib.sha256(canonical(entry)).hexdigest()


def head_path(path: str | os.PathLike[str]) -> Path:
    """The head file of the audit log at ``path`` (``<log>.head``)."""
    path = Path(path)
    return path.with_name(path.name + ".head")


def read_head(path: str | os.PathLike[str]) -> tuple[int, str] | None:
    """``(seq, hash)`` of the last entry as recorded in the head file, or ``None``."""
    try:
        data = json.loads(head_path(path).read_text())
        return int(data["seq"]), str(data["hash"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_line(fh) -> tuple[bytes, int]:
    """The last complete line of an open binary file and the size of a torn tail after it."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return b"", 0
    block = 4096
    pos = end
    data = b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        data = fh.read(step) + data
        body = data[:-1] if data.endswith(b"\n") else data
        if b"\n" in body or pos == 0:
            break
        block *= 2
    torn = 0
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        torn = len(data) - (cut + 1)
        data = data[: cut + 1]
    lines = data.splitlines()
    return (lines[-1] if lines else b""), torn


class AuditLog:
    """Append-only hash-chained JSONL log; ``append`` returns the written entry.

    Drop-in for the old ``fairwatch.alerts.audit.AuditLog``: ``append(kind, **fields)`` and
    ``entries()``. ``fsync=False`` only for tests that write thousands of entries.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True, clock=time.time) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.clock = clock
        self._lock = threading.Lock()

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        if not isinstance(kind, str) or not kind:
            raise ValueError(MSG_KIND.format(value=kind))
        for name in fields:
            if name in RESERVED:
                raise ValueError(MSG_RESERVED.format(name=name))
        body = _jsonable(fields)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                try:
                    last, torn = _last_line(fh)
                    if torn:
                        self._cut_torn_tail(fh, torn)
                    seq, prev = 0, GENESIS
                    if last:
                        tail = json.loads(last)
                        seq, prev = int(tail["seq"]), str(tail["hash"])
                    if torn:
                        self._write(fh, self._entry(seq + 1, "audit.recovered", {"torn_bytes": torn}, prev))
                        seq, prev = seq + 1, self._written["hash"]
                    entry = self._entry(seq + 1, kind, body, prev)
                    self._write(fh, entry)
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return entry

    def _entry(self, seq: int, kind: str, fields: dict[str, Any], prev: str) -> dict[str, Any]:
        ts = float(self.clock())
        entry: dict[str, Any] = {"seq": seq, "ts": ts, "kind": kind, **fields, "prev_hash": prev}
        entry["hash"] = entry_hash(entry)
        return entry

    def _cut_torn_tail(self, fh, torn: int) -> None:
        size = fh.seek(0, os.SEEK_END)
        log.warning("audit log %s: cutting a torn last line of %d bytes", self.path, torn)
        fh.truncate(size - torn)

    def _write(self, fh, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, default=str).encode() + b"\n"
        fh.seek(0, os.SEEK_END)
        fh.write(line)
        fh.flush()
        if self.fsync:
            os.fsync(fh.fileno())
        self._written = entry
        head = head_path(self.path)
        tmp = head.with_name(head.name + ".tmp")
        with open(tmp, "w") as h:
            json.dump({"seq": entry["seq"], "hash": entry["hash"]}, h)
            h.flush()
            if self.fsync:
                os.fsync(h.fileno())
        os.replace(tmp, head)
        if self.fsync:
            _fsync_dir(head.parent)

    def entries(self) -> list[dict[str, Any]]:
        return list(iter_entries(self.path))

    def head(self) -> tuple[int, str] | None:
        return read_head(self.path)


def iter_entries(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every parseable entry (no checks; see :func:`verify`)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
    except FileNotFoundError:
        return


@dataclass(frozen=True)
class VerifyResult:
    """``ok``, the number of good entries, and the first bad entry (seq + reason)."""

    ok: bool
    entries: int
    seq: int | None = None
    line: int | None = None
    reason: str | None = None
    head: tuple[int, str] | None = None

    def message(self, path: str | os.PathLike[str]) -> str:
        if self.ok:
            return f"{path}: ok, {self.entries} entries, chain intact" + (
                f", head seq {self.head[0]} {self.head[1][:12]}…" if self.head else ""
            )
        return f"{path}: FAILED at entry seq {self.seq} (line {self.line}): {self.reason}"


def verify(path: str | os.PathLike[str], *, head: tuple[int, str] | None = None) -> VerifyResult:
    """Check the whole chain; the first bad entry is named by the seq it should have.

    ``head`` overrides the head file (e.g. the head recorded in an export manifest).
    A missing log with no head is an empty, valid log.
    """
    path = Path(path)
    head = head if head is not None else read_head(path)
    want, prev, n = 1, GENESIS, 0
    if path.exists():
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                bad = _check_line(raw, want, prev)
                if bad is not None:
                    return VerifyResult(False, n, want, lineno, bad, head)
                prev = json.loads(raw)["hash"]
                want += 1
                n += 1
    if head is not None:
        hseq, hhash = head
        if hseq > n:
            return VerifyResult(False, n, n + 1, n + 1, R_TRUNCATED.format(last=n, head=hseq), head)
        if hseq == n and n and hhash != prev:
            return VerifyResult(False, n, n, n, R_HEAD.format(seq=n), head)
    return VerifyResult(True, n, head=head)


def _check_line(raw: bytes, want: int, prev: str) -> str | None:
    if not raw.endswith(b"\n"):
        return R_TORN
    try:
        entry = json.loads(raw)
    except ValueError:
        return R_JSON
    if not isinstance(entry, dict):
        return R_JSON
    for name in ("seq", "ts", "kind", "prev_hash", "hash"):
        if name not in entry:
            return R_FIELDS.format(name=name)
    if entry["seq"] != want:
        return R_SEQ.format(got=entry["seq"], want=want)
    if entry["prev_hash"] != prev:
        return R_PREV.format(prev=want - 1)
    if entry_hash(entry) != entry["hash"]:
        return R_HASH
    return None


class MemoryAuditLog:
    """The same interface and chain, in memory (tests, benchmarks)."""

    def __init__(self, *, clock=time.time) -> None:
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.clock = clock

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        for name in fields:
            if name in RESERVED:
                raise ValueError(MSG_RESERVED.format(name=name))
        body = _jsonable(fields)
        with self._lock:
            prev = self._entries[-1]["hash"] if self._entries else GENESIS
            entry: dict[str, Any] = {
                "seq": len(self._entries) + 1,
                "ts": float(self.clock()),
                "kind": kind,
                **body,
                "prev_hash": prev,
            }
            entry["hash"] = entry_hash(entry)
            self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)
