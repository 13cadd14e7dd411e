"""Outcome join: decisions waiting for their outcomes, and outcomes waiting for decisions.

A :class:`JoinStore` keeps, per pending decision, what the engine needs to count
its label later (event time, score, decision, group indices) in numpy columns,
keyed by ``decision_id``. It is also the dedupe memory: a decision id is known
for as long as its entry lives (the TTL), so a re-delivered decision is counted
once. Memory is bounded: past ``capacity`` entries the oldest move to a durable
SQLite tier (:class:`SpillTier`) and are looked up there on a miss.

Outcomes that arrive before their decision wait in a bounded, insertion-ordered
map; an outcome still waiting after the TTL, or pushed out by the bound, is
*orphaned*. A decision still unlabeled after the TTL is *expired*.

>>> store = JoinStore(width=2, ttl=3600.0, capacity=10)
>>> rows = store.add_decisions(["a", "b"], np.array([0.0, 10.0]), np.array([0.9, 0.2]),
...                            np.array([1, 0]), np.array([-1, -1]), np.array([7, 8]),
...                            np.array([[0, 1], [2, 3]]))
>>> store.lookup(["b", "zz"]).tolist()
[1, -1]
>>> store.wait_outcomes(["c"], np.array([1]), np.array([10.0]))
>>> store.take_waiting(["c", "a"])
([0], [1])
>>> store.expire(watermark=5000.0)    # a and b were never labeled
>>> store.counts["expired"], len(store)
(2, 0)
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path

import numpy as np

__all__ = ["JoinStore", "SpillTier"]

_INITIAL = 1024


class _Bloom:
    """Which ids may be in the spill tier: no false negatives, few false positives.

    Keyed by Python's string hash (salted per process), so it is rebuilt from the
    tier's ids at start instead of being stored.
    """

    K = 4

    def __init__(self, bits: int = 1 << 24):
        self.bits = bits
        self.array = np.zeros(bits // 8, np.uint8)
        self.added = 0

    def _positions(self, ids: Sequence[str]) -> np.ndarray:
        h = np.fromiter((hash(i) for i in ids), np.int64, len(ids)).view(np.uint64)
        h2 = (h * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
        return np.stack([(h + np.uint64(k) * h2) % np.uint64(self.bits) for k in range(self.K)])

    def add(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        pos = self._positions(ids).reshape(-1)
        np.bitwise_or.at(
            self.array, (pos >> np.uint64(3)).astype(np.int64), (1 << (pos & np.uint64(7))).astype(np.uint8)
        )
        self.added += len(ids)

    def may_contain(self, ids: Sequence[str]) -> np.ndarray:
        if not ids or not self.added:
            return np.zeros(len(ids), bool)
        pos = self._positions(ids)
        byte = self.array[(pos >> np.uint64(3)).astype(np.int64)]
        hit = (byte >> (pos & np.uint64(7)).astype(np.uint8)) & 1
        return hit.all(axis=0)


class SpillTier:
    """Pending decisions beyond the in-memory capacity, in SQLite (durable, unbounded by RAM)."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL") if self.path != ":memory:" else None
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS pending (decision_id TEXT PRIMARY KEY, ts REAL, score REAL,"
            " decision INTEGER, label INTEGER, fingerprint INTEGER, groups BLOB)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS pending_ts ON pending (ts)")
        self.rows = self.db.execute("SELECT count(*) FROM pending").fetchone()[0]
        self._rebuild_bloom()

    def _rebuild_bloom(self) -> None:
        self.bloom = _Bloom(max(1 << 20, 1 << int(16 * max(self.rows, 1)).bit_length()))
        cur = self.db.execute("SELECT decision_id FROM pending")
        while batch := cur.fetchmany(100_000):
            self.bloom.add([r[0] for r in batch])
        self._deleted = 0

    def put(self, rows: list[tuple]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO pending VALUES (?,?,?,?,?,?,?)", rows)
        self.db.execute("COMMIT")
        # spilled ids are new to the tier: deduplicated, and removed from here when they come back
        self.rows += len(rows)
        if self.rows > self.bloom.bits // 16:
            self._rebuild_bloom()  # keep false positives rare as the tier grows
        else:
            self.bloom.add([r[0] for r in rows])

    def pop(self, ids: Sequence[str]) -> dict[str, tuple]:
        """Remove and return the entries of ``ids`` that are here."""
        found: dict[str, tuple] = {}
        if not self.rows or not ids:
            return found
        maybe = self.bloom.may_contain(ids)
        uniq = list(dict.fromkeys(i for i, m in zip(ids, maybe.tolist(), strict=True) if m))
        for i in range(0, len(uniq), 500):
            chunk = uniq[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT * FROM pending WHERE decision_id IN ({marks})", chunk).fetchall():
                found[row[0]] = row
        if found:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM pending WHERE decision_id = ?", [(k,) for k in found])
            self.db.execute("COMMIT")
            self.rows -= len(found)
            self._deleted += len(found)
        return found

    def expire(self, cutoff: float) -> int:
        """Drop entries older than ``cutoff``; returns how many were still unlabeled."""
        if not self.rows:
            return 0
        unlabeled = self.db.execute("SELECT count(*) FROM pending WHERE ts < ? AND label < 0", (cutoff,)).fetchone()[0]
        deleted = self.db.execute("DELETE FROM pending WHERE ts < ?", (cutoff,)).rowcount
        self.rows -= deleted
        self._deleted += deleted
        if self._deleted > max(self.rows, 100_000):
            self._rebuild_bloom()  # deleted ids would otherwise stay "maybe" forever
        return unlabeled

    def unlabeled(self) -> int:
        if not self.rows:
            return 0
        return self.db.execute("SELECT count(*) FROM pending WHERE label < 0").fetchone()[0]

    def close(self) -> None:
        self.db.close()


class JoinStore:
    """Pending decisions (dedupe + outcome join) and early outcomes, bounded, with a TTL."""

    def __init__(
        self,
        *,
        width: int,
        ttl: float,
        capacity: int = 500_000,
        max_waiting: int = 100_000,
        spill: SpillTier | None = None,
    ):
        self.width = width
        self.ttl = ttl
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.spill = spill
        self._alloc(_INITIAL)
        self.index: dict[str, int] = {}
        self._free: list[int] = []
        self._next = 0
        self.waiting: dict[str, tuple[int, float]] = {}  # id → (label, outcome event time)
        self.counts = {"joined": 0, "expired": 0, "orphaned": 0, "superseded": 0, "spilled": 0}

    def _alloc(self, n: int) -> None:
        self.ts = np.zeros(n, np.float64)
        self.score = np.zeros(n, np.float64)
        self.decision = np.zeros(n, np.int64)
        self.label = np.full(n, -1, np.int64)
        self.fingerprint = np.zeros(n, np.int64)
        self.groups = np.full((n, self.width), -1, np.int64)
        # row → decision id; numpy object arrays are not tracked by the cyclic GC,
        # so a million pending decisions cost no collector time (a list would)
        self.ids = np.full(n, None, object)
        self.used = np.zeros(n, bool)
        #: at most the event time of every stored decision (inf: none stored): when the TTL's
        #: cutoff is not past it, :meth:`expire` need not scan the rows
        self._min_ts = np.inf

    def _grow(self, n: int) -> None:
        old = (self.ts, self.score, self.decision, self.label, self.fingerprint, self.groups, self.used, self.ids)
        size, bound = len(self.ts), self._min_ts
        self._alloc(n)
        self._min_ts = bound
        for new, prev in zip(
            (self.ts, self.score, self.decision, self.label, self.fingerprint, self.groups, self.used, self.ids),
            old,
            strict=True,
        ):
            new[:size] = prev

    def widen(self, width: int) -> None:
        """Room for more group columns (an attribute seen for the first time)."""
        if width > self.width:
            self.groups = np.pad(self.groups, ((0, 0), (0, width - self.width)), constant_values=-1)
            self.width = width

    def __len__(self) -> int:
        return len(self.index) + (self.spill.rows if self.spill else 0)

    @property
    def pending_unlabeled(self) -> int:
        """Decisions still waiting for their outcome (memory and spill tier)."""
        mem = int(np.count_nonzero((self.label < 0) & self.used))
        return mem + (self.spill.unlabeled() if self.spill else 0)

    # -- lookups ---------------------------------------------------------------
    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        """Row per id, -1 when unknown; entries found in the spill tier come back into memory."""
        get = self.index.get
        rows = np.fromiter(map(get, ids, repeat(-1)), np.int64, len(ids))
        if self.spill is not None and self.spill.rows and (rows < 0).any():
            missing = [ids[j] for j in np.nonzero(rows < 0)[0]]
            found = self.spill.pop(missing)
            if found:
                self._insert(*self._spilled_columns(list(found.values())))
                rows = np.fromiter(map(get, ids, repeat(-1)), np.int64, len(ids))
        return rows

    def _spilled_columns(self, recs: list[tuple]) -> tuple:
        """Spill-tier records as the columns of :meth:`_write`: ids, ts, score, decision, label,
        fingerprint, groups."""
        return (
            [r[0] for r in recs],
            *(np.array([r[k] for r in recs]) for k in range(1, 6)),
            np.stack([self._unpack_groups(r[6]) for r in recs]),
        )

    def _unpack_groups(self, blob: bytes) -> np.ndarray:
        g = np.frombuffer(blob, np.int64)
        out = np.full(self.width, -1, np.int64)
        out[: len(g)] = g
        return out

    # -- updates ---------------------------------------------------------------
    def _reserve(self, n: int) -> np.ndarray:
        """``n`` unused rows (freed ones first, newest first), growing the arrays if needed."""
        rows = np.empty(n, np.int64)
        free = self._free
        k = min(n, len(free))
        if k:
            rows[:k] = free[len(free) - k :]
            del free[len(free) - k :]
        if k < n:
            need = self._next + (n - k)
            if need > len(self.ts):
                self._grow(max(need, 2 * len(self.ts)))
            rows[k:] = np.arange(self._next, need)
            self._next = need
        return rows

    def _write(self, rows, ids, ts, score, decision, label, fingerprint, groups) -> None:
        self.ts[rows] = ts
        self.score[rows] = score
        self.decision[rows] = decision
        self.label[rows] = label
        self.fingerprint[rows] = fingerprint
        g = np.full((len(rows), self.width), -1, np.int64)
        g[:, : groups.shape[1]] = groups
        self.groups[rows] = g
        self.used[rows] = True
        self.ids[rows] = ids
        if len(rows):
            self._min_ts = min(self._min_ts, float(np.min(ts)))

    def _insert(self, ids, ts, score, decision, label, fingerprint, groups) -> np.ndarray:
        rows = self._reserve(len(ids))
        self._write(rows, ids, ts, score, decision, label, fingerprint, groups)
        self.index.update(zip(ids, rows.tolist(), strict=True))  # a C loop: no per-event bytecode
        return rows

    def claim(self, ids: list[str], fingerprint: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dedupe and reserve in one pass over the index (the engine's hot path).

        Every id not known yet gets a reserved row; an id seen before — in memory,
        in the spill tier (it comes back into memory), or earlier in this batch —
        keeps its row (first write wins). Returns ``(rows, new, same)``: the row
        each event's id maps to now, whether the event is the first of its id,
        and for the others whether their fingerprint equals the first one's.
        New events must then go to :meth:`fill` or :meth:`release`.
        """
        n = len(ids)
        reserved = self._reserve(n)
        rows = np.fromiter(map(self.index.setdefault, ids, reserved.tolist()), np.int64, n)
        new = rows == reserved
        if not new.all():
            self._free.extend(reserved[~new].tolist())  # repeats: their reserved rows stay unused
        if self.spill is not None and self.spill.rows:
            nj = np.nonzero(new)[0]
            found = self.spill.pop([ids[j] for j in nj.tolist()])
            if found:
                back = np.array([j for j in nj.tolist() if ids[j] in found], np.int64)
                self._write(rows[back], *self._spilled_columns([found[ids[j]] for j in back.tolist()]))
                new[back] = False
        self.fingerprint[rows[new]] = fingerprint[new]  # so repeats within the batch compare too
        same = self.fingerprint[rows] == fingerprint
        return rows, new, same

    def release(self, ids: Sequence[str], rows: np.ndarray) -> None:
        """Give back rows reserved by :meth:`claim` for events that were not stored."""
        deque(map(self.index.pop, ids), maxlen=0)
        self._free.extend(rows.tolist())

    def fill(self, rows, ids, ts, score, decision, label, fingerprint, groups) -> None:
        """Store new decisions in the rows :meth:`claim` reserved for them (then :meth:`trim`)."""
        self._write(rows, ids, ts, score, decision, label, fingerprint, groups)

    def trim(self) -> None:
        """Back within capacity: the oldest tenth goes to the spill tier (or is forgotten)."""
        if len(self.index) > self.capacity:
            self._spill_oldest(len(self.index) - self.capacity + self.capacity // 10)

    def add_decisions(self, ids, ts, score, decision, label, fingerprint, groups) -> np.ndarray:
        """Remember new (already deduplicated) decisions; returns their rows."""
        rows = self._insert(ids, ts, score, decision, label, fingerprint, groups)
        self.trim()
        return rows

    def _remove(self, rows: np.ndarray) -> None:
        deque(map(self.index.pop, self.ids[rows].tolist()), maxlen=0)
        self.ids[rows] = None
        self.used[rows] = False
        self.label[rows] = -1
        self._free.extend(rows.tolist())

    def _spill_oldest(self, n: int) -> None:
        if self.spill is None:
            # No durable tier: forget the oldest (their outcomes will be orphaned).
            rows = self._oldest(n)
            self.counts["expired"] += int((self.label[rows] < 0).sum())
            self._remove(rows)
            return
        rows = self._oldest(n)
        self.spill.put(
            [
                (
                    self.ids[r],
                    float(self.ts[r]),
                    float(self.score[r]),
                    int(self.decision[r]),
                    int(self.label[r]),
                    int(self.fingerprint[r]),
                    self.groups[r].tobytes(),
                )
                for r in rows.tolist()
            ]
        )
        self.counts["spilled"] += len(rows)
        self._remove(rows)

    def _oldest(self, n: int) -> np.ndarray:
        used = np.nonzero(self.used)[0]
        if n >= len(used):
            return used
        part = np.argpartition(self.ts[used], n)[:n]
        return used[part]

    def set_labels(self, rows: np.ndarray, labels: np.ndarray) -> None:
        self.label[rows] = labels
        self.counts["joined"] += len(rows)

    def wait_outcomes(self, ids: Sequence[str], labels: np.ndarray, times: np.ndarray) -> None:
        """Keep outcomes whose decision has not arrived yet (first one per id wins).

        An outcome waits until the decision watermark passes its own event time + TTL,
        so when it is orphaned does not depend on how the stream was batched.
        """
        waiting = self.waiting
        for i, lab, t in zip(ids, labels.tolist(), times.tolist(), strict=True):
            if i not in waiting:
                waiting[i] = (lab, t)
        overflow = len(waiting) - self.max_waiting
        if overflow > 0:
            for key in list(waiting)[:overflow]:
                del waiting[key]
            self.counts["orphaned"] += overflow

    def take_waiting(self, ids: Sequence[str]) -> tuple[list[int], list[int]]:
        """Positions in ``ids`` whose outcome was already waiting, and those labels."""
        if not self.waiting:
            return [], []
        hits = list(map(self.waiting.pop, ids, repeat(None)))  # a C loop over the batch
        if hits.count(None) == len(hits):
            return [], []
        pos = [j for j, h in enumerate(hits) if h is not None]
        return pos, [hits[j][0] for j in pos]

    # -- checkpoints -----------------------------------------------------------
    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The in-memory tier as arrays + JSON (the spill tier is durable by itself)."""
        rows = np.nonzero(self.used)[0]
        # Narrow types on disk (0/1, −1/0/1, CRC-32C, group rows < 2³¹): 34 bytes a row
        # instead of 64 to write at every checkpoint. restore() widens them again.
        arrays = {
            "ts": self.ts[rows],
            "score": self.score[rows],
            "decision": self.decision[rows].astype(np.int8),
            "label": self.label[rows].astype(np.int8),
            "fingerprint": self.fingerprint[rows].astype(np.uint32),
            "groups": self.groups[rows].astype(np.int32),
        }
        meta = {
            "width": self.width,
            "ids": self.ids[rows].tolist(),
            "waiting": [[k, lab, seen] for k, (lab, seen) in self.waiting.items()],
            "counts": self.counts,
        }
        return arrays, meta

    def restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Replace the in-memory tier with a checkpointed one."""
        self.width = meta["width"]
        self._alloc(max(_INITIAL, len(meta["ids"])))
        self.index = {}
        self._free = []
        self._next = 0
        if meta["ids"]:
            self._insert(
                meta["ids"],
                arrays["ts"],
                arrays["score"],
                arrays["decision"],
                arrays["label"],
                arrays["fingerprint"],
                arrays["groups"],
            )
        self.waiting = {k: (lab, seen) for k, lab, seen in meta["waiting"]}
        self.counts = {**self.counts, **meta["counts"]}

    def expire(self, *, watermark: float) -> None:
        """Drop decisions and early outcomes older than the TTL."""
        cutoff = watermark - self.ttl
        if cutoff > self._min_ts:
            old = np.nonzero(self.used & (self.ts < cutoff))[0]
            if len(old):
                self.counts["expired"] += int((self.label[old] < 0).sum())
                self._remove(old)
            live = self.ts[self.used]
            self._min_ts = float(live.min()) if len(live) else np.inf
        if self.spill is not None:
            self.counts["expired"] += self.spill.expire(cutoff)
        if self.waiting:
            stale = [k for k, (_, seen) in self.waiting.items() if seen < cutoff]
            for k in stale:
                del self.waiting[k]
            self.counts["orphaned"] += len(stale)
