"""The checkpoint store is used from several threads at once: each call is one whole transaction."""

from __future__ import annotations

import threading

import pytest
from fairwatch.monitor.state import Checkpoint, PostgresStateStore, SqliteStateStore

ROWS = [f"g/{p}" for p in range(6)] + ["g/alerts"]


def _hammer(store, rounds: int = 300) -> tuple[list[BaseException], list[set[bytes]]]:
    """One thread saves whole checkpoints (every row the same generation), one loads them,
    as the daemon's writer thread and its loop do; returns the errors and what each load saw."""
    errors: list[BaseException] = []
    seen: list[set[bytes]] = []
    store.save({k: Checkpoint(b"0", {}) for k in ROWS})
    stop = threading.Event()

    def writer():
        try:
            for gen in range(1, rounds + 1):
                store.save({k: Checkpoint(str(gen).encode(), {f"t:{i}": gen}) for i, k in enumerate(ROWS)})
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def reader():
        try:
            while not stop.is_set():
                got = store.load(ROWS)
                seen.append({c.state for c in got.values()})
                assert store.keys() == sorted(ROWS)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors, seen


def _check(store) -> None:
    try:
        errors, seen = _hammer(store)
        assert not errors, errors
        assert len(seen) > 10, "the reader hardly ran"
        torn = [s for s in seen if len(s) != 1]
        assert not torn, f"{len(torn)} loads saw rows of two checkpoints: {torn[:3]}"
        assert store.load(["g/alerts"])["g/alerts"].state == b"300"
    finally:
        store.close()


def test_sqlite_store_serves_a_writer_and_a_reader_thread(tmp_path):
    _check(SqliteStateStore(tmp_path / "s.db"))


@pytest.mark.integration
def test_postgres_store_serves_a_writer_and_a_reader_thread(fresh_database):
    """Without the store's lock the reader's transaction ran inside the writer's
    (psycopg: OutOfOrderTransactionNesting), seen as an unread alert memory at a takeover."""
    _check(PostgresStateStore(fresh_database))
