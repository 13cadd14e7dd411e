"""Per-day statistics for exact monthly metrics, and Kafka reconciliation counters (docs/files.md).

:class:`DailyStats` is an engine observer (``Engine(observer=…)``): per (model,
UTC day of the decision's event time, attribute, group) it adds the same
mergeable counts the windows hold — decisions by decision, labeled decisions by
(decision, label), calibration bins. They are sums, so a month is the exact sum
of its days, never an average of averages. It also counts, per (topic,
partition, day of consumption), the events by result and reason and the first
and last offset, so "every decision accounted for" is a checked equation:
``ok + invalid + duplicate + late == last − first + 1``.

Counts accumulate in memory per *scope* (the daemon's partition index; ``None``
for a replay) and reach the :class:`DailyStore` (SQLite) only behind a
checkpoint: the daemon saves the pending counts as a redo record in the same
transaction as the engine state, then applies them to the store together with
the record's generation number. A crash before the apply is redone on restart;
a crash after it is recognised by the generation and not applied twice.

>>> import numpy as np
>>> d = DailyStats(bins=4)
>>> names = [("sex", "F"), ("sex", "M")]
>>> day = 86400.0 * 20_000
>>> d.on_decisions("m", names, np.array([day, day + 1, day + 86400]), np.array([1, 0, 1]), np.array([[0], [1], [0]]))
>>> d.on_labels("m", names, np.array([day]), np.array([0.9]), np.array([1]), np.array([1]), np.array([[0]]))
>>> store = DailyStore(":memory:")
>>> store.apply(d.take(None))
True
>>> c = store.counts("2024-10")        # day 20000 = 2024-10-04
>>> sorted(c)
[('2024-10-04', 'm', 'sex', 'F'), ('2024-10-04', 'm', 'sex', 'M'), ('2024-10-05', 'm', 'sex', 'F')]
>>> f = c[("2024-10-04", "m", "sex", "F")]
>>> f.n, f.selection_rate, f.true_positive_rate
(1, 1.0, 1.0)
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from fairwatch.monitor.stats import DEFAULT_BINS, CountsTable, GroupCounts

__all__ = [
    "DailyStats",
    "DailyStore",
    "EventDays",
    "PartitionDay",
    "day_of",
    "month_days",
    "offset_runs",
    "RECON_RESULTS",
]

DAY = 86400.0
RECON_RESULTS = ("ok", "invalid", "duplicate", "late")
MSG_MONTH = "month: expected YYYY-MM, got {value!r}"


def day_of(ts: float) -> str:
    """UTC day of an epoch timestamp.

    >>> day_of(0.0), day_of(86399.999), day_of(86400.0)
    ('1970-01-01', '1970-01-01', '1970-01-02')
    """
    return dt.datetime.fromtimestamp(int(ts // DAY) * DAY, dt.UTC).strftime("%Y-%m-%d")


def _day_name(k: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(k))).isoformat()


def month_days(month: str) -> list[str]:
    """Every day of ``YYYY-MM``.

    >>> month_days("2024-02")[-1], len(month_days("2026-11"))
    ('2024-02-29', 30)
    """
    try:
        first = dt.date.fromisoformat(month + "-01")
    except (TypeError, ValueError):
        raise ValueError(MSG_MONTH.format(value=month)) from None
    if len(month) != 7:
        raise ValueError(MSG_MONTH.format(value=month))
    out = []
    d = first
    while d.month == first.month:
        out.append(d.isoformat())
        d += dt.timedelta(days=1)
    return out


def offset_runs(offsets: Iterable[int], days: Iterable[int]) -> list[tuple[int, int, int]]:
    """``(day, first, last)`` runs of consecutive offsets with the same day, in offset order.

    >>> offset_runs([5, 6, 7, 9, 10], [1, 1, 2, 2, 2])
    [(1, 5, 6), (2, 7, 7), (2, 9, 10)]
    """
    runs: list[list[int]] = []
    for off, day in zip(offsets, days, strict=True):
        off, day = int(off), int(day)
        if runs and runs[-1][0] == day and runs[-1][2] == off - 1:
            runs[-1][2] = off
        else:
            runs.append([day, off, off])
    return [(d, a, b) for d, a, b in runs]


class EventDays:
    """One batch's events by *event day* (the engine fills it during ``process``).

    ``counts``: (topic, day, result, reason) → events, the day of each event's own
    timestamp (an invalid message has none: ``processing_day``, the day it was consumed);
    ``positions``: topic → each message's day, by its position in the batch. Days are
    days since the epoch (UTC).
    """

    __slots__ = ("processing_day", "counts", "positions")

    def __init__(self, now: float):
        self.processing_day = int(now // DAY)
        self.counts: Counter = Counter()
        self.positions: dict[str, np.ndarray] = {}

    def add(self, topic: str, day: int, result: str, reason: str, n: int) -> None:
        self.counts[(topic, int(day), result, reason)] += n

    def tally(self, topic: str, result: str, reason: str, ts: np.ndarray) -> None:
        if not len(ts):
            return
        days = np.floor_divide(ts, DAY).astype(np.int64)
        lo, hi = int(days.min()), int(days.max())
        if lo == hi:
            self.add(topic, lo, result, reason, len(days))
            return
        for k, c in zip(*np.unique(days, return_counts=True), strict=True):
            self.add(topic, int(k), result, reason, int(c))


class _DayTables:
    """Counts of one model in one scope: one table per day, indexed like the model's group table."""

    __slots__ = ("names", "days", "bins")

    def __init__(self, names: list, bins: int):
        self.names = names  # the model's GroupTable.names (grows; indices are stable)
        self.days: dict[int, CountsTable] = {}
        self.bins = bins

    def table(self, day: int) -> CountsTable:
        t = self.days.get(day)
        if t is None:
            t = self.days[day] = CountsTable((), groups=len(self.names), bins=self.bins)
        elif t.groups < len(self.names):
            t.grow(len(self.names))
        return t


@dataclass
class PartitionDay:
    """Reconciliation counters of one (topic, partition, day): the runs of offsets whose
    messages carry that day, and their events by result and reason."""

    runs: list[list[int]] = field(default_factory=list)  # [first, last] of consecutive offsets
    events: Counter = field(default_factory=Counter)  # (result, reason) → events
    dead_lettered: Counter = field(default_factory=Counter)  # reason → events sent to the dead-letter topic

    def run(self, first: int, last: int) -> None:
        if self.runs and self.runs[-1][1] == first - 1:
            self.runs[-1][1] = last
        else:
            self.runs.append([first, last])

    def offsets(self, offs: Iterable[int]) -> None:
        for off in sorted(int(o) for o in offs):
            if not (self.runs and self.runs[-1][0] <= off <= self.runs[-1][1]):
                self.run(off, off)


def _rows(gidx: np.ndarray, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """Flatten a (rows × columns) group-index matrix; drop −1 cells; repeat the row values."""
    c = gidx.shape[1]
    flat = gidx.reshape(-1)
    keep = flat >= 0
    return (flat[keep],) + tuple(np.repeat(a, c)[keep] for a in cols)


class DailyStats:
    """Engine observer: per-day counts and reconciliation counters, pending until :meth:`take`."""

    def __init__(self, bins: int = DEFAULT_BINS):
        self.bins = bins
        self.scope: object = None  # set by the daemon to the partition index before each batch
        self._pending: dict[object, dict[str, list[_DayTables]]] = {}
        self._recon: dict[object, dict[tuple[str, int, str], PartitionDay]] = {}
        self._generation: dict[object, int] = {}
        self._lock = threading.Lock()

    # -- the engine hook ---------------------------------------------------------
    def _tables(self, model: str, names: list) -> _DayTables:
        tables = self._pending.setdefault(self.scope, {}).setdefault(model, [])
        if not tables or tables[-1].names is not names:  # new, or the model's group table was replaced
            tables.append(_DayTables(names, self.bins))
        return tables[-1]

    def on_decisions(self, model: str, names: list, ts: np.ndarray, decision: np.ndarray, gidx: np.ndarray) -> None:
        with self._lock:
            t = self._tables(model, names)
            days = np.floor_divide(ts, DAY).astype(np.int64)
            grp, dec, day = _rows(gidx, decision, days)
            for k in _unique(days):
                sel = day == k
                t.table(k).add_decisions(grp[sel], dec[sel])

    def on_labels(
        self,
        model: str,
        names: list,
        ts: np.ndarray,
        score: np.ndarray,
        decision: np.ndarray,
        label: np.ndarray,
        gidx: np.ndarray,
    ) -> None:
        with self._lock:
            t = self._tables(model, names)
            days = np.floor_divide(ts, DAY).astype(np.int64)
            grp, sc, dec, lab, day = _rows(gidx, score, decision, label, days)
            for k in _unique(days):
                sel = day == k
                t.table(k).add_labels(grp[sel], sc[sel], dec[sel], lab[sel])

    # -- the daemon hook ---------------------------------------------------------
    def count_events(
        self,
        topic: str,
        partition: int,
        now: float,
        offsets: Iterable[int],
        events: Counter,
        dead_lettered: Counter | None = None,
    ) -> None:
        """Events of one batch all on one day, ``now``'s (their offsets and events by (result, reason))."""
        with self._lock:
            pd = self._day(topic, partition, day_of(now))
            pd.offsets(offsets)
            pd.events.update(events)
            if dead_lettered:
                pd.dead_lettered.update(dead_lettered)

    def count_event_days(
        self,
        topic: str,
        partition: int,
        offsets: list[int],
        days: np.ndarray,
        events: Counter,
        dead_lettered: Counter | None = None,
        dead_day: int | None = None,
    ) -> None:
        """One applied batch of one topic partition by *event day*: ``days`` is each offset's
        day (:attr:`EventDays.positions`), ``events`` (day, result, reason) → n; the dead
        letters count on ``dead_day`` (invalid messages: the day they were consumed)."""
        with self._lock:
            for day, a, b in offset_runs(offsets, days.tolist()):
                self._day(topic, partition, _day_name(day)).run(a, b)
            for (day, result, reason), n in events.items():
                self._day(topic, partition, _day_name(day)).events[(result, reason)] += n
            if dead_lettered and dead_day is not None:
                self._day(topic, partition, _day_name(dead_day)).dead_lettered.update(dead_lettered)

    def _day(self, topic: str, partition: int, day: str) -> PartitionDay:
        return self._recon.setdefault(self.scope, {}).setdefault((topic, int(partition), day), PartitionDay())

    def discard(self, scope: object) -> None:
        """Forget a scope's pending counts (its engine state goes back to the checkpoint)."""
        with self._lock:
            self._pending.pop(scope, None)
            self._recon.pop(scope, None)

    def resume(self, scope: object, generation: int) -> None:
        """Continue a scope's generations after ``generation`` (restored from the store)."""
        with self._lock:
            self._generation[scope] = max(self._generation.get(scope, 0), int(generation))

    def take(self, scope: object) -> bytes | None:
        """The scope's pending counts as a redo record (JSON), and start afresh; ``None``: nothing pending."""
        with self._lock:
            per = self._pending.pop(scope, {})
            recon = self._recon.pop(scope, {})
            if not per and not recon:
                return None
            g = self._generation.get(scope, 0) + 1
            self._generation[scope] = g
        counts: dict[tuple[str, str, str, str], list] = {}
        for model, t in ((m, t) for m, ts in per.items() for t in ts):
            for k, tab in t.days.items():
                day = _day_name(k)
                touched = np.nonzero(tab.dec.any(axis=1) | tab.lab.reshape(tab.groups, -1).any(axis=1))[0]
                for i in touched:
                    col, grp = t.names[i]
                    row = [
                        tab.dec[i].tolist(),
                        tab.lab[i].tolist(),
                        tab.cal_n[i].tolist(),
                        tab.cal_s[i].tolist(),
                        tab.cal_l[i].tolist(),
                    ]
                    ck = (model, day, col, grp)
                    if ck in counts:
                        row = _add_rows(counts[ck], row)
                    counts[ck] = row
        return orjson.dumps(
            {
                "scope": None if scope is None else str(scope),
                "generation": g,
                "bins": self.bins,
                "counts": [[*k, *v] for k, v in sorted(counts.items())],
                "recon": [
                    [
                        topic,
                        part,
                        day,
                        pd.runs,
                        [[r, why, n] for (r, why), n in sorted(pd.events.items()) if n],
                        [[why, n] for why, n in sorted(pd.dead_lettered.items()) if n],
                    ]
                    for (topic, part, day), pd in sorted(recon.items())
                ],
            }
        )


def _unique(days: np.ndarray) -> list[int]:
    if len(days) == 0:
        return []
    lo, hi = int(days.min()), int(days.max())
    return [lo] if lo == hi else [int(k) for k in np.unique(days)]


def _add_rows(a: list, b: list) -> list:
    return [(np.asarray(x) + np.asarray(y)).tolist() for x, y in zip(a, b, strict=True)]


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS daily_counts ("
    " model TEXT NOT NULL, day TEXT NOT NULL, attribute TEXT NOT NULL, grp TEXT NOT NULL,"
    " dec TEXT NOT NULL, lab TEXT NOT NULL, cal_n TEXT NOT NULL, cal_s TEXT NOT NULL, cal_l TEXT NOT NULL,"
    " PRIMARY KEY (model, day, attribute, grp))",
    "CREATE TABLE IF NOT EXISTS reconciliation ("
    " topic TEXT NOT NULL, partition INTEGER NOT NULL, day TEXT NOT NULL, result TEXT NOT NULL,"
    " reason TEXT NOT NULL, events INTEGER NOT NULL, PRIMARY KEY (topic, partition, day, result, reason))",
    "CREATE TABLE IF NOT EXISTS reconciliation_offsets ("
    " topic TEXT NOT NULL, partition INTEGER NOT NULL, day TEXT NOT NULL,"
    " first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition, day))",
    # one row per run and redo record (source = scope#generation): the same offsets applied
    # twice (by two replicas) stay two rows, so the export sees them counted twice
    "CREATE TABLE IF NOT EXISTS reconciliation_runs ("
    " topic TEXT NOT NULL, partition INTEGER NOT NULL, day TEXT NOT NULL,"
    " first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL, source TEXT NOT NULL,"
    " PRIMARY KEY (topic, partition, day, first_offset, source))",
    "CREATE TABLE IF NOT EXISTS dead_lettered ("
    " topic TEXT NOT NULL, partition INTEGER NOT NULL, day TEXT NOT NULL, reason TEXT NOT NULL,"
    " events INTEGER NOT NULL, PRIMARY KEY (topic, partition, day, reason))",
    "CREATE TABLE IF NOT EXISTS applied (scope TEXT PRIMARY KEY, generation INTEGER NOT NULL)",
)


_GET_APPLIED = "SELECT generation FROM applied WHERE scope = ?"
_GET_COUNTS = (
    "SELECT dec, lab, cal_n, cal_s, cal_l FROM daily_counts WHERE model = ? AND day = ? AND attribute = ? AND grp = ?"
)
_PUT_COUNTS = "INSERT OR REPLACE INTO daily_counts VALUES (?,?,?,?,?,?,?,?,?)"
_PUT_APPLIED = "INSERT OR REPLACE INTO applied VALUES (?, ?)"
_ADD_EVENTS = (
    "INSERT INTO reconciliation VALUES (?,?,?,?,?,?) ON CONFLICT DO UPDATE SET events = events + excluded.events"
)
_ADD_RUN = "INSERT INTO reconciliation_runs VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING"
_ADD_DEAD = "INSERT INTO dead_lettered VALUES (?,?,?,?,?) ON CONFLICT DO UPDATE SET events = events + excluded.events"
_ADD_OFFSETS = (
    "INSERT INTO reconciliation_offsets VALUES (?,?,?,?,?) ON CONFLICT DO UPDATE"
    " SET first_offset = min(first_offset, excluded.first_offset),"
    " last_offset = max(last_offset, excluded.last_offset)"
)
#: The same statements for PostgreSQL (explicit conflict targets, LEAST/GREATEST, 64-bit counts).
_POSTGRES_SQL = {
    "BEGIN IMMEDIATE": "BEGIN",
    # read-modify-write under row locks, so replicas applying at the same time serialise
    _GET_APPLIED: "SELECT generation FROM applied WHERE scope = %s FOR UPDATE",
    _GET_COUNTS: _GET_COUNTS.replace("?", "%s") + " FOR UPDATE",
    _PUT_COUNTS: "INSERT INTO daily_counts VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (model, day, attribute, grp)"
    " DO UPDATE SET dec = excluded.dec, lab = excluded.lab, cal_n = excluded.cal_n, cal_s = excluded.cal_s,"
    " cal_l = excluded.cal_l",
    _PUT_APPLIED: "INSERT INTO applied VALUES (%s, %s) ON CONFLICT (scope)"
    " DO UPDATE SET generation = excluded.generation",
    _ADD_EVENTS: "INSERT INTO reconciliation VALUES (%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (topic, partition, day, result, reason)"
    " DO UPDATE SET events = reconciliation.events + excluded.events",
    _ADD_RUN: "INSERT INTO reconciliation_runs VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
    _ADD_DEAD: "INSERT INTO dead_lettered VALUES (%s,%s,%s,%s,%s) ON CONFLICT (topic, partition, day, reason)"
    " DO UPDATE SET events = dead_lettered.events + excluded.events",
    _ADD_OFFSETS: "INSERT INTO reconciliation_offsets VALUES (%s,%s,%s,%s,%s) ON CONFLICT (topic, partition, day)"
    " DO UPDATE SET first_offset = LEAST(reconciliation_offsets.first_offset, excluded.first_offset),"
    " last_offset = GREATEST(reconciliation_offsets.last_offset, excluded.last_offset)",
}


class _Postgres:
    """A psycopg 3 connection that takes the store's SQLite statements (translated, not rewritten)."""

    def __init__(self, dsn: str):
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)

    @staticmethod
    def sql(statement: str) -> str:
        known = _POSTGRES_SQL.get(statement)
        if known is not None:
            return known
        return statement.replace("?", "%s").replace(" INTEGER ", " BIGINT ")

    def execute(self, statement: str, params=()):
        return self.conn.execute(self.sql(statement), params)

    def executemany(self, statement: str, rows) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(self.sql(statement), rows)

    def create(self, ddls) -> None:
        """The tables, created by one replica at a time (see :data:`fairwatch.monitor.state.SCHEMA_LOCK`)."""
        from fairwatch.monitor.state import SCHEMA_LOCK

        with self.conn.transaction():
            self.conn.execute(SCHEMA_LOCK)
            for ddl in ddls:
                self.execute(ddl)

    def close(self) -> None:
        self.conn.close()


class DailyStore:
    """The persisted per-day counts and reconciliation counters.

    A SQLite file (default, beside a SQLite state), or — given a ``postgresql://`` URL —
    tables in the PostgreSQL state database, shared by every replica of the group:
    redo records are applied once per partition generation, whoever applies them.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._lock = threading.Lock()
        if self.path.startswith(("postgresql://", "postgres://")):
            self.db = _Postgres(self.path)
        else:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
        if isinstance(self.db, _Postgres):
            self.db.create(_SCHEMA)
        else:
            for ddl in _SCHEMA:
                self.db.execute(ddl)

    def close(self) -> None:
        self.db.close()

    def generation(self, scope: object) -> int:
        row = self.db.execute("SELECT generation FROM applied WHERE scope = ?", (_scope(scope),)).fetchone()
        return int(row[0]) if row else 0

    def apply(self, record: bytes) -> bool:
        """Add a redo record's counts unless its generation was applied already; True if applied."""
        rec = orjson.loads(record)
        scope = rec["scope"]
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(_GET_APPLIED, (_scope(scope),)).fetchone()
                if row and int(row[0]) >= rec["generation"]:
                    db.execute("ROLLBACK")
                    return False
                for model, day, col, grp, *vals in rec["counts"]:
                    old = db.execute(_GET_COUNTS, (model, day, col, grp)).fetchone()
                    if old:
                        vals = _add_rows([orjson.loads(x) for x in old], vals)
                    db.execute(_PUT_COUNTS, (model, day, col, grp, *(orjson.dumps(v).decode() for v in vals)))
                for entry in rec["recon"]:
                    if len(entry) == 7:  # a record written before the runs: one (first, last) per day
                        topic, part, day, first, last, events, dls = entry
                        runs = [] if first is None else [[first, last]]
                    else:
                        topic, part, day, runs, events, dls = entry
                    for result, reason, n in events:
                        db.execute(_ADD_EVENTS, (topic, part, day, result, reason, n))
                    for reason, n in dls:
                        db.execute(_ADD_DEAD, (topic, part, day, reason, n))
                    for first, last in runs:
                        db.execute(_ADD_RUN, (topic, part, day, first, last, f"{_scope(scope)}#{rec['generation']}"))
                    if runs:
                        lo, hi = min(r[0] for r in runs), max(r[1] for r in runs)
                        db.execute(_ADD_OFFSETS, (topic, part, day, lo, hi))
                db.execute(_PUT_APPLIED, (_scope(scope), rec["generation"]))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return True

    # -- reading -----------------------------------------------------------------
    def counts(self, month: str | None = None, *, days: Iterable[str] | None = None) -> dict[tuple, GroupCounts]:
        """``(day, model, attribute, group) → GroupCounts`` of a month (``YYYY-MM``) or of given days."""
        if days is not None:
            wanted = sorted(set(days))
            q = f"SELECT * FROM daily_counts WHERE day IN ({','.join('?' * len(wanted))})"
            rows = self.db.execute(q, wanted).fetchall() if wanted else []
        elif month is not None:
            rows = self.db.execute("SELECT * FROM daily_counts WHERE day LIKE ?", (month + "-%",)).fetchall()
        else:
            rows = self.db.execute("SELECT * FROM daily_counts").fetchall()
        out = {}
        for model, day, col, grp, *vals in rows:
            dec, lab, cn, cs, cl = (orjson.loads(v) for v in vals)
            out[(day, model, col, grp)] = GroupCounts(
                np.asarray(dec, np.int64),
                np.asarray(lab, np.int64),
                np.asarray(cn, np.int64),
                np.asarray(cs, np.float64),
                np.asarray(cl, np.int64),
            )
        return out

    def reconciliation(self, month: str) -> dict[tuple[str, int], dict]:
        """Per (topic, partition): the events of ``month`` by *event day*, whenever consumed,
        and the offsets that carried them.

        ``offsets``: how many messages carried the month's events (the runs' lengths);
        ``first``/``last``: the lowest and highest of them; ``events`` (result, reason) → n;
        ``dead_lettered`` reason → n. Over ``first``…``last`` the runs of *every* day (other
        months' events interleave) must cover each offset exactly once: ``gaps`` offsets no
        run holds (skipped), ``overlaps`` offsets held twice (counted twice), ``other_days``
        offsets whose messages carry another month.
        """
        like = (month + "-%",)
        out: dict[tuple[str, int], dict] = {}

        def slot(topic: str, part: int) -> dict:
            return out.setdefault(
                (topic, int(part)),
                {
                    "first": None,
                    "last": None,
                    "offsets": 0,
                    "runs": [],
                    "events": Counter(),
                    "dead_lettered": Counter(),
                    "gaps": 0,
                    "overlaps": 0,
                    "other_days": 0,
                },
            )

        for topic, part, first, last in self.db.execute(
            "SELECT topic, partition, first_offset, last_offset FROM reconciliation_runs WHERE day LIKE ?"
            " ORDER BY topic, partition, first_offset",
            like,
        ):
            slot(topic, part)["runs"].append((int(first), int(last)))
        for topic, part, first, last in self.db.execute(
            "SELECT topic, partition, min(first_offset), max(last_offset) FROM reconciliation_offsets"
            " WHERE day LIKE ? GROUP BY topic, partition",
            like,
        ):
            s = slot(topic, part)
            if not s["runs"]:  # counted before runs were kept: the day's range is its one run
                s["runs"].append((int(first), int(last)))
        for topic, part, result, reason, n in self.db.execute(
            "SELECT topic, partition, result, reason, sum(events) FROM reconciliation WHERE day LIKE ?"
            " GROUP BY topic, partition, result, reason",
            like,
        ):
            slot(topic, part)["events"][(result, reason)] += n
        for topic, part, reason, n in self.db.execute(
            "SELECT topic, partition, reason, sum(events) FROM dead_lettered WHERE day LIKE ?"
            " GROUP BY topic, partition, reason",
            like,
        ):
            slot(topic, part)["dead_lettered"][reason] += n
        for (topic, part), s in out.items():
            runs = s.pop("runs")
            if not runs:
                continue
            s["first"], s["last"] = min(a for a, _ in runs), max(b for _, b in runs)
            s["offsets"] = sum(b - a + 1 for a, b in runs)
            every = self.db.execute(
                "SELECT day, first_offset, last_offset FROM reconciliation_runs"
                " WHERE topic = ? AND partition = ? AND last_offset >= ? AND first_offset <= ?",
                (topic, part, s["first"], s["last"]),
            ).fetchall()
            clipped = sorted((max(a, s["first"]), min(b, s["last"])) for _, a, b in every)
            if not every:
                clipped = sorted(runs)
            s["other_days"] = sum(
                min(b, s["last"]) - max(a, s["first"]) + 1 for day, a, b in every if not day.startswith(month)
            )
            covered, total, end = 0, 0, s["first"] - 1
            for a, b in clipped:
                total += b - a + 1
                if b > end:
                    covered += b - max(a, end + 1) + 1
                    end = b
            s["gaps"] = (s["last"] - s["first"] + 1) - covered
            s["overlaps"] = total - covered
        return out

    def has_month(self, month: str) -> bool:
        """Whether anything was counted for ``month`` (statistics or consumed events)."""
        like = (month + "-%",)
        return any(
            self.db.execute(f"SELECT 1 FROM {t} WHERE day LIKE ? LIMIT 1", like).fetchone()
            for t in ("daily_counts", "reconciliation")
        )

    def days(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT day FROM daily_counts ORDER BY 1")]

    def delete_before(self, day: str) -> int:
        """Retention: drop every per-day row of days before ``day``; returns the rows removed."""
        with self._lock:
            n = 0
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for table in (
                    "daily_counts",
                    "reconciliation",
                    "reconciliation_offsets",
                    "reconciliation_runs",
                    "dead_lettered",
                ):
                    n += self.db.execute(f"DELETE FROM {table} WHERE day < ?", (day,)).rowcount
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        return n

    def put_counts(self, rows: dict[tuple[str, str, str, str], GroupCounts]) -> None:
        """Write ``(model, day, attribute, group) → counts`` directly (backfills, benchmarks)."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                _PUT_COUNTS,
                [
                    (
                        *k,
                        *(
                            orjson.dumps(a.tolist()).decode()
                            for a in (c.decisions, c.labeled, c.cal_n, c.cal_s, c.cal_l)
                        ),
                    )
                    for k, c in rows.items()
                ],
            )
            self.db.execute("COMMIT")


def _scope(scope: object) -> str:
    return "" if scope is None else str(scope)
