"""Per-day statistics in PostgreSQL (the state database replicas share) equal the SQLite store's."""

from __future__ import annotations

import pytest
from fairwatch.monitor.daily import DailyStats, DailyStore
from fairwatch.monitor.engine import Engine, EngineSettings
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay

from fairwatch.app.config import load_config

pytestmark = pytest.mark.integration


def _records() -> list[bytes]:
    """Redo records of two partitions over two simulated days, as the daemon writes them."""
    daily = DailyStats(10)
    engine = Engine(EngineSettings(windows=("1h",)), observer=daily)
    sim = LoanSimulator(seed=8, rate=0.5, delay=OutcomeDelay(kind="lognormal", median_s=3600.0))
    out = []
    for step in range(8):
        scope = f"g/{step % 2}"
        daily.scope = scope
        b = sim.advance_batch(6 * 3600.0)
        engine.process(decisions=b.topic_values(False), outcomes=b.topic_values(True))
        daily.count_events(
            "fairness.decisions", step % 2, sim.now, iter(range(step * 10, step * 10 + 10)), {("ok", ""): 10}, {}
        )
        record = daily.take(scope)
        assert record is not None
        out.append(record)
    return out


def test_postgres_daily_store_equals_sqlite_and_applies_each_record_once(fresh_database, tmp_path):
    records = _records()
    pg = DailyStore(fresh_database)
    lite = DailyStore(tmp_path / "daily.db")
    try:
        for r in records:
            assert pg.apply(r) and lite.apply(r)
        for r in records:  # a redo after a crash, or a second replica: no double counting
            assert not pg.apply(r)
        month = "2026-11"
        assert pg.days() == lite.days() and len(pg.days()) >= 2
        a, b = pg.counts(month), lite.counts(month)
        assert a.keys() == b.keys() and len(a) > 0
        assert all(a[k] == b[k] for k in a)
        assert pg.reconciliation(month) == lite.reconciliation(month)
        assert pg.generation("g/0") == lite.generation("g/0") == 4
        first = pg.days()[1]
        assert pg.delete_before(first) == lite.delete_before(first) > 0
        assert pg.days() == lite.days()
    finally:
        pg.close()
        lite.close()


def test_postgres_state_keeps_daily_statistics_in_the_same_database():
    cfg = load_config(env={"FAIRWATCH_STATE__URL": "postgresql://fw@db/fairwatch"})
    assert cfg.audit.daily_path(cfg.state.url) == "postgresql://fw@db/fairwatch"
    cfg = load_config(env={"FAIRWATCH_STATE__URL": "sqlite:///var/fw.db"})
    assert cfg.audit.daily_path(cfg.state.url) == "var/fw.daily.db"


def test_replicas_starting_together_on_a_fresh_database_all_create_their_tables(fresh_database):
    # Helm starts N replicas at once: without the schema lock one of them failed on a
    # duplicate key in pg_type (CREATE TABLE IF NOT EXISTS is not safe concurrently).
    import threading

    from fairwatch.monitor.state import PostgresStateStore

    start, errors, stores = threading.Barrier(6), [], []

    def replica():
        try:
            start.wait()
            stores.append(PostgresStateStore(fresh_database))
            stores.append(DailyStore(fresh_database))
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert errors == [] and len(stores) == 12
