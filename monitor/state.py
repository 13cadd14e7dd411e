"""Durable checkpoints: engine state and the Kafka offsets it contains, saved atomically.

One row per *partition key* (consumer group + partition index): the state of
the models read from that partition and the next offset of each of its topic
partitions. All rows of one checkpoint are written in one transaction, so a
crash leaves either the old or the new checkpoint, never a mix. Kafka offsets
are committed only after :meth:`StateStore.save` returns (docs/files.md, "Checkpoint").

Two backends behind one interface: SQLite (default, a local file) and
PostgreSQL (psycopg 3) for production, where a replica's state must outlive
its pod.

>>> import tempfile, os
>>> store = open_state_store("sqlite:///" + os.path.join(tempfile.mkdtemp(), "s.db"))
>>> store.save({"g/0": Checkpoint(b"state", {"fairness.decisions:0": 42})})
>>> store.load(["g/0", "g/1"])["g/0"].offsets
{'fairness.decisions:0': 42}
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import orjson

__all__ = ["Checkpoint", "StateStore", "SqliteStateStore", "PostgresStateStore", "open_state_store"]

log = logging.getLogger("fairwatch.state")

MSG_URL = "state.url: expected sqlite:///PATH or postgresql://…, got {url!r}"


@dataclass(frozen=True)
class Checkpoint:
    """Engine state of one partition key and the offsets it has consumed up to (next offset)."""

    state: bytes
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" → next offset
    created: float = 0.0


def _serialised(method):
    """``method`` under the store's lock (one transaction at a time on its connection)."""

    @functools.wraps(method)
    def call(self, *args, **kw):
        with self._lock:
            return method(self, *args, **kw)

    return call


class StateStore(ABC):
    """Atomic save/load of checkpoints, safe to call from several threads.

    A store holds one database connection, and one transaction at a time runs on it:
    every call takes the store's lock. The daemon saves on its writer thread while its
    loop and the consumer's rebalance callbacks load; without the lock a load ran inside
    the writer's transaction (seen on PostgreSQL: ``OutOfOrderTransactionNesting``, the
    alert memory unread at a takeover, and the new evaluator acting again).
    """

    last_saved: float | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()  # taken by every method marked @_serialised

    @abstractmethod
    def save(self, checkpoints: dict[str, Checkpoint], *, stamp: bool = True) -> None:
        """Write every checkpoint in one transaction; durable when this returns.

        ``stamp``: the write is a checkpoint, and ``last_saved`` (exported as the last
        checkpoint's time) moves; ``False`` for a row saved alone, such as the alert memory.
        """

    @abstractmethod
    def load(self, keys: Iterable[str]) -> dict[str, Checkpoint]:
        """The stored checkpoints of ``keys`` (missing keys are absent)."""

    @abstractmethod
    def keys(self) -> list[str]:
        """Every stored partition key."""

    def close(self) -> None:
        return None


class SqliteStateStore(StateStore):
    """Checkpoints in a local SQLite file (WAL, synchronous=FULL: durable at commit)."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS fairwatch_checkpoints ("
            " partition_key TEXT PRIMARY KEY, state BLOB NOT NULL, offsets TEXT NOT NULL, created REAL NOT NULL)"
        )

    @_serialised
    def save(self, checkpoints: dict[str, Checkpoint], *, stamp: bool = True) -> None:
        now = time.time()
        rows = [(k, c.state, orjson.dumps(c.offsets).decode(), now) for k, c in checkpoints.items()]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany("INSERT OR REPLACE INTO fairwatch_checkpoints VALUES (?,?,?,?)", rows)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        if stamp:
            self.last_saved = now

    @_serialised
    def load(self, keys: Iterable[str]) -> dict[str, Checkpoint]:
        out = {}
        for k in keys:
            row = self.db.execute(
                "SELECT state, offsets, created FROM fairwatch_checkpoints WHERE partition_key = ?", (k,)
            ).fetchone()
            if row:
                out[k] = Checkpoint(bytes(row[0]), orjson.loads(row[1]), row[2])
        return out

    @_serialised
    def keys(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT partition_key FROM fairwatch_checkpoints ORDER BY 1")]

    @_serialised
    def close(self) -> None:
        self.db.close()


#: Taken before creating tables: replicas that start together on a fresh database would
#: otherwise race in ``CREATE TABLE IF NOT EXISTS``, which PostgreSQL does not make safe
#: (one of them fails on a duplicate key in ``pg_type``). Released at the transaction's end.
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(7379238450468627300)"  # "fairwatch" as a lock id


class PostgresStateStore(StateStore):
    """Checkpoints in PostgreSQL (psycopg 3), one transaction per save."""

    def __init__(self, dsn: str):
        super().__init__()
        import psycopg

        self.dsn = dsn
        self.db = psycopg.connect(dsn, autocommit=False)
        with self.db.transaction():
            self.db.execute(SCHEMA_LOCK)
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS fairwatch_checkpoints ("
                " partition_key TEXT PRIMARY KEY, state BYTEA NOT NULL, offsets JSONB NOT NULL,"
                " created DOUBLE PRECISION NOT NULL)"
            )

    @_serialised
    def save(self, checkpoints: dict[str, Checkpoint], *, stamp: bool = True) -> None:
        now = time.time()
        with self.db.transaction(), self.db.cursor() as cur:
            cur.executemany(
                "INSERT INTO fairwatch_checkpoints VALUES (%s, %s, %s, %s) ON CONFLICT (partition_key)"
                " DO UPDATE SET state = EXCLUDED.state, offsets = EXCLUDED.offsets, created = EXCLUDED.created",
                [(k, c.state, orjson.dumps(c.offsets).decode(), now) for k, c in checkpoints.items()],
            )
        if stamp:
            self.last_saved = now

    @_serialised
    def load(self, keys: Iterable[str]) -> dict[str, Checkpoint]:
        out = {}
        with self.db.transaction(), self.db.cursor() as cur:
            for k in keys:
                cur.execute("SELECT state, offsets, created FROM fairwatch_checkpoints WHERE partition_key = %s", (k,))
                row = cur.fetchone()
                if row:
                    offsets = row[1] if isinstance(row[1], dict) else orjson.loads(row[1])
                    out[k] = Checkpoint(bytes(row[0]), offsets, row[2])
        return out

    @_serialised
    def keys(self) -> list[str]:
        with self.db.transaction(), self.db.cursor() as cur:
            cur.execute("SELECT partition_key FROM fairwatch_checkpoints ORDER BY 1")
            return [r[0] for r in cur.fetchall()]

    @_serialised
    def close(self) -> None:
        self.db.close()


def open_state_store(url: str) -> StateStore:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``postgresql://user@host/db``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(MSG_URL.format(url=url))
        return SqliteStateStore(path)
    if parsed.scheme in ("postgresql", "postgres"):
        return PostgresStateStore(url)
    raise ValueError(MSG_URL.format(url=url))
