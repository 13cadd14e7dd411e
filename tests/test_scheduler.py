"""The daemon's scheduler: jobs fire, misfires coalesce, cron jobs do their files, /jobs shows them."""

from __future__ import annotations

import datetime as dt
import threading
import time
import urllib.request
from contextlib import ExitStack

import numpy as np
import orjson
import pytest
from fairwatch.monitor.audit import MemoryAuditLog
from fairwatch.monitor.daily import DailyStore
from fairwatch.monitor.stats import GroupCounts

from fairwatch.app.export import verify_export
from fairwatch.app.scheduler import FairwatchScheduler, JobContext

UTC = dt.UTC


def _counts(n: int, fav: int, labeled: int = 0) -> GroupCounts:
    c = GroupCounts.empty()
    c.decisions[:] = [n - fav, fav]
    c.labeled[1, 1] = labeled
    c.cal_n[8] = labeled
    c.cal_s[8] = 0.85 * labeled
    c.cal_l[8] = labeled
    return c


def _store(path) -> DailyStore:
    store = DailyStore(path)
    rows = {}
    for day in ["2025-01-01", *(f"2026-11-{d:02d}" for d in range(1, 31))]:
        rows[("m", day, "sex", "F")] = _counts(300, 150, 120)
        rows[("m", day, "sex", "M")] = _counts(300, 200, 120)
    store.put_counts(rows)
    return store


class _Counter:
    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.n += 1


def _wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_interval_jobs_fire_and_a_paused_backlog_coalesces_into_one_run():
    cp, ev = _Counter(), _Counter()
    s = FairwatchScheduler(checkpoint_interval=0.2, evaluation_interval=0.2, wake_checkpoint=cp, wake_evaluate=ev)
    s.start()
    try:
        assert _wait(lambda: cp.n >= 3 and ev.n >= 3)
        s.scheduler.pause()
        time.sleep(0.15)
        before = cp.n
        time.sleep(1.3)  # ≈ 6 missed run times
        s.scheduler.resume()
        time.sleep(0.1)
        assert 1 <= cp.n - before <= 2  # coalesced: one run for the whole backlog
        # The same backlog without coalescing runs every missed time (within the grace time).
        s.scheduler.modify_job("checkpoint", coalesce=False)
        s.scheduler.pause()
        time.sleep(0.15)
        before = cp.n
        time.sleep(0.9)
        s.scheduler.resume()
        time.sleep(0.1)
        assert cp.n - before >= 4
        jobs = {j["id"]: j for j in s.jobs()}
        assert set(jobs) == {"checkpoint", "evaluate"}
        assert jobs["evaluate"]["coalesce"] is True and jobs["evaluate"]["max_instances"] == 1
        assert jobs["checkpoint"]["runs"] >= 5
    finally:
        s.shutdown()


def test_cron_jobs_monthly_export_weekly_summary_retention(tmp_path):
    store = _store(tmp_path / "d.db")
    store.close()
    (tmp_path / "exports" / "2018-01").mkdir(parents=True)
    audit = MemoryAuditLog()
    ctx = JobContext(
        daily_db=str(tmp_path / "d.db"),
        export_dir=str(tmp_path / "exports"),
        summary_dir=str(tmp_path / "summaries"),
        audit=audit,
    )
    s = FairwatchScheduler(
        checkpoint_interval=60,
        evaluation_interval=60,
        wake_checkpoint=lambda: None,
        wake_evaluate=lambda: None,
        context=ctx,
        catch_up=False,
    )
    mid_month = dt.datetime(2026, 11, 15, 12, tzinfo=UTC)
    trig = s.scheduler.get_job("monthly-export").trigger
    assert trig.get_next_fire_time(None, mid_month) == dt.datetime(2026, 12, 1, 0, 5, tzinfo=UTC)
    assert s.scheduler.get_job("weekly-summary").trigger.get_next_fire_time(None, mid_month).weekday() == 0
    assert s.scheduler.get_job("monthly-export").misfire_grace_time == 6 * 3600
    first = dt.datetime(2026, 12, 1, 0, 5, tzinfo=UTC)
    assert s.run_now("monthly-export", first).startswith("2026-11:")
    out = tmp_path / "exports" / "2026-11"
    assert verify_export(out) == []
    doc = orjson.loads((out / "report.json").read_bytes())
    assert doc["models"]["m"]["sex"]["month"]["groups"]["F"]["decisions"] == 300 * 30
    assert s.run_now("monthly-export", first) == "2026-11: already exported"  # idempotent
    assert [e["kind"] for e in audit.entries()] == ["audit.export"]

    assert s.run_now("weekly-summary", first).startswith("weekly-2026-11-30")
    week = orjson.loads((tmp_path / "summaries" / "weekly-2026-11-30.json").read_bytes())
    assert week["from"] == "2026-11-24" and week["attributes"][0]["decisions"] == 2 * 300 * 7
    assert week["attributes"][0]["dp_ratio"] == pytest.approx(0.75)
    assert "| m | sex | 4200 |" in (tmp_path / "summaries" / "weekly-2026-11-30.md").read_text()

    ctx.export_retention = 365 * 86400.0
    assert s.run_now("retention", first) == "2 per-day rows, 1 exports removed"
    assert not (tmp_path / "exports" / "2018-01").exists() and out.exists()
    store = DailyStore(tmp_path / "d.db")
    assert store.days()[0] == "2026-11-01"
    store.close()
    jobs = {j["id"]: j for j in s.jobs()}
    assert jobs["monthly-export"]["runs"] == 2 and jobs["retention"]["last_result"].startswith("2 per-day")


def test_catch_up_runs_the_monthly_export_at_start(tmp_path):
    DailyStore(tmp_path / "d.db").close()
    ctx = JobContext(daily_db=str(tmp_path / "d.db"), export_dir=str(tmp_path / "exports"))
    s = FairwatchScheduler(
        checkpoint_interval=60,
        evaluation_interval=60,
        wake_checkpoint=lambda: None,
        wake_evaluate=lambda: None,
        context=ctx,
    )
    s.start()
    try:
        assert _wait(lambda: s.stats["monthly-export"].runs == 1)
        assert s.stats["monthly-export"].last_result.endswith("nothing counted, no export")
    finally:
        s.shutdown()


def test_daemon_serves_jobs_and_its_loop_honours_the_wake_flags(tmp_path):
    from fairwatch.monitor.exporter import serve_metrics

    from fairwatch.app.config import load_config
    from fairwatch.app.daemon import Daemon

    cfg = load_config(
        env={
            "FAIRWATCH_STATE__URL": f"sqlite:///{tmp_path}/state.db",
            "FAIRWATCH_AUDIT__EXPORT_DIR": str(tmp_path / "exports"),
            "FAIRWATCH_STATE__CHECKPOINT_INTERVAL": "0.2",
            "FAIRWATCH_EVALUATION_INTERVAL": "0.2",
        }
    )
    d = Daemon(cfg)
    with ExitStack() as stack:
        d._start_scheduler(stack)
        server, _ = serve_metrics(d.board, host="127.0.0.1", port=0, routes={"/jobs": d._jobs_route})
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        assert _wait(lambda: d.wake["checkpoint"].is_set() and d.wake["evaluate"].is_set())
        # the loop (not the scheduler thread) does the work when the flag is up
        assert d._due("checkpoint", time.monotonic(), np.inf)
        d.wake["checkpoint"].clear()
        assert not d._due("checkpoint", time.monotonic(), 0.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/jobs", timeout=5) as r:
            body = orjson.loads(r.read())
        assert {j["id"] for j in body["jobs"]} == {
            "checkpoint",
            "evaluate",
            "monthly-export",
            "weekly-summary",
            "retention",
        }
        assert all(j["coalesce"] for j in body["jobs"])
    d.store.close()
    d.daily_store.close()
