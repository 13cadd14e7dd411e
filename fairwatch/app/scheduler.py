"""Background jobs of ``fairwatch run`` (apscheduler ``BackgroundScheduler``, UTC).

=================  ==========================  =============================================
job                trigger                     what it does
=================  ==========================  =============================================
``checkpoint``     every checkpoint interval   sets a flag; the daemon loop checkpoints
``evaluate``       every evaluation interval   sets a flag; the daemon loop evaluates
``monthly-export`` cron ``5 0 1 * *``          audit export of the previous month
``weekly-summary`` cron ``10 0 * * mon``       JSON + Markdown summary of the last 7 days
``retention``      cron ``30 3 * * *``         drops old per-day statistics and exports
=================  ==========================  =============================================

Checkpoint and evaluation only *flag* the daemon's loop thread: a checkpoint
must never run concurrently with the loop applying a batch (the offsets it
commits must be behind the state it saved), so the loop does the work between
batches. The other jobs read and write their own files and open their own
database connections. Every job coalesces missed runs into one
(``coalesce=True``) and never runs twice at once (``max_instances=1``); interval
jobs that are late by more than one interval are skipped (the next one comes
soon), cron jobs still run within ``misfire_grace_time``. The job table
(:meth:`FairwatchScheduler.jobs`) is served as ``GET /jobs`` beside ``/metrics``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

__all__ = [
    "FairwatchScheduler",
    "JobContext",
    "check_cron",
    "previous_month",
    "run_monthly_export",
    "run_weekly_summary",
    "run_retention",
]

log = logging.getLogger("fairwatch.scheduler")
UTC = dt.UTC


def check_cron(expr: str) -> str | None:
    """``None`` when ``expr`` is a valid 5-field crontab expression, else the reason.

    >>> check_cron("5 0 1 * *") is None, check_cron("every day")
    (True, "expected 5 crontab fields (minute hour day month day_of_week), got 'every day'")
    """
    if not isinstance(expr, str) or len(expr.split()) != 5:
        return f"expected 5 crontab fields (minute hour day month day_of_week), got {expr!r}"
    try:
        CronTrigger.from_crontab(expr, timezone=UTC)
    except ValueError as exc:
        return f"{exc} in {expr!r}"
    return None


def previous_month(now: dt.datetime) -> str:
    """``YYYY-MM`` of the month before ``now``.

    >>> previous_month(dt.datetime(2027, 1, 1, 0, 5, tzinfo=UTC)), previous_month(dt.datetime(2026, 12, 31))
    ('2026-12', '2026-11')
    """
    first = now.replace(day=1)
    return (first - dt.timedelta(days=1)).strftime("%Y-%m")


@dataclass
class JobContext:
    """Where the file jobs read and write."""

    daily_db: str | None
    export_dir: str = "audit-exports"
    summary_dir: str = "audit-summaries"
    audit_log: str | None = None
    pipeline_dir: str | None = None
    daily_retention: float = 400 * 86400.0
    export_retention: float = 7 * 365 * 86400.0
    settings: Any = None  # fairwatch.app.export.ExportSettings
    audit: Any = None  # an AuditSink for "audit.export" entries


def run_monthly_export(ctx: JobContext, now: dt.datetime) -> str:
    """Export the month before ``now`` into ``export_dir/YYYY-MM`` unless it exists (idempotent)."""
    from fairwatch.app.export import export_month
    from fairwatch.monitor.daily import DailyStore

    month = previous_month(now)
    out = Path(ctx.export_dir) / month
    if out.exists():
        return f"{month}: already exported"
    if not ctx.daily_db:
        return f"{month}: no per-day statistics configured"
    store = DailyStore(ctx.daily_db)  # its own connection: the daemon's writes go on meanwhile
    try:
        if not store.has_month(month):
            return f"{month}: nothing counted, no export"
        res = export_month(
            month, out, store=store, audit_log=ctx.audit_log, pipeline_dir=ctx.pipeline_dir, settings=ctx.settings
        )
    finally:
        store.close()
    manifest = (out / "manifest.sha256").read_bytes()
    if ctx.audit is not None:
        ctx.audit.append(
            "audit.export",
            month=month,
            out=str(out),
            files=len(res.files),
            manifest_sha256=hashlib.sha256(manifest).hexdigest(),
            reconciliation=res.reconciliation_ok,
            audit_chain_ok=res.audit_ok,
        )
    return f"{month}: {len(res.files)} files, reconciliation {res.reconciliation_ok}"


def run_weekly_summary(ctx: JobContext, now: dt.datetime) -> str:
    """Summary of the 7 full UTC days before ``now``: ``summary_dir/weekly-<last day>.{json,md}``."""
    import orjson

    from fairwatch.app.export import ExportSettings, _metrics
    from fairwatch.monitor.daily import DailyStore

    end = now.astimezone(UTC).date()
    days = [(end - dt.timedelta(days=i)).isoformat() for i in range(7, 0, -1)]
    if not ctx.daily_db:
        return "no per-day statistics configured"
    store = DailyStore(ctx.daily_db)
    try:
        counts = store.counts(days=days)
    finally:
        store.close()
    s = ctx.settings or ExportSettings()
    total: dict[tuple[str, str], dict] = {}
    for (_day, model, col, grp), c in sorted(counts.items()):
        t = total.setdefault((model, col), {})
        if grp in t:
            t[grp] += c
        else:
            t[grp] = c.copy()
    rows = []
    for (model, col), groups in sorted(total.items()):
        am = _metrics(groups, col, s)
        worst = min(
            (g for g in am.groups if g.disparate_impact is not None), key=lambda g: g.disparate_impact, default=None
        )
        rows.append(
            {
                "model": model,
                "attribute": col,
                "decisions": sum(g.decisions for g in am.groups),
                "labeled": sum(g.labeled for g in am.groups),
                "dp_ratio": am.dp_ratio,
                "dp_ratio_ci": am.dp_ratio_ci,
                "eo_gap": am.eo_gap,
                "eo_gap_ci": am.eo_gap_ci,
                "lowest_di_group": worst.group if worst else None,
                "lowest_di": worst.disparate_impact if worst else None,
                "max_ece": max(
                    (g.expected_calibration_error for g in am.groups if g.expected_calibration_error is not None),
                    default=None,
                ),
            }
        )
    out = Path(ctx.summary_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"weekly-{days[-1]}"
    doc = {"from": days[0], "to": days[-1], "generated_at": now.timestamp(), "attributes": rows}
    (out / f"{stem}.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))

    def f(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    md = [
        f"# fairwatch weekly summary {days[0]} – {days[-1]}",
        "",
        "| model | attribute | decisions | labeled | DP ratio | EO gap | lowest DI (group) | max ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['model']} | {r['attribute']} | {r['decisions']} | {r['labeled']} | {f(r['dp_ratio'])} | "
        f"{f(r['eo_gap'])} | {f(r['lowest_di'])} ({r['lowest_di_group'] or '–'}) | {f(r['max_ece'])} |"
        for r in rows
    ]
    if not rows:
        md.append("| – | no decisions in these days | | | | | | |")
    (out / f"{stem}.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return f"{stem}: {len(rows)} attributes"


def run_retention(ctx: JobContext, now: dt.datetime) -> str:
    """Drop per-day statistics older than ``daily_retention`` and exports/summaries past ``export_retention``."""
    from fairwatch.monitor.daily import DailyStore

    removed = 0
    if ctx.daily_db:
        cutoff = (now - dt.timedelta(seconds=ctx.daily_retention)).date().isoformat()
        store = DailyStore(ctx.daily_db)
        try:
            removed = store.delete_before(cutoff)
        finally:
            store.close()
    horizon = now - dt.timedelta(seconds=ctx.export_retention)
    gone = []
    root = Path(ctx.export_dir)
    if root.is_dir():
        for p in sorted(root.iterdir()):
            try:
                month = dt.datetime.strptime(p.name, "%Y-%m").replace(tzinfo=UTC)
            except ValueError:
                continue  # not ours
            nxt = (month + dt.timedelta(days=32)).replace(day=1)
            if p.is_dir() and nxt <= horizon:
                shutil.rmtree(p)
                gone.append(p.name)
    sroot = Path(ctx.summary_dir)
    if sroot.is_dir():
        for p in sorted(sroot.glob("weekly-*.*")):
            try:
                day = dt.datetime.strptime(p.stem[len("weekly-") :], "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                continue
            if day < horizon:
                p.unlink()
    if ctx.audit is not None and (removed or gone):
        ctx.audit.append("audit.retention", daily_rows_removed=removed, exports_removed=gone)
    return f"{removed} per-day rows, {len(gone)} exports removed"


@dataclass
class _Stats:
    runs: int = 0
    errors: int = 0
    missed: int = 0
    last_run: float | None = None
    last_result: str | None = None
    last_error: str | None = None


@dataclass
class FairwatchScheduler:
    """The daemon's jobs on one ``BackgroundScheduler``; :meth:`jobs` is the ``/jobs`` table."""

    checkpoint_interval: float
    evaluation_interval: float
    wake_checkpoint: Callable[[], None]
    wake_evaluate: Callable[[], None]
    context: JobContext | None = None
    monthly_export: str = "5 0 1 * *"
    weekly_summary: str = "10 0 * * mon"
    retention: str = "30 3 * * *"
    misfire_grace_time: float = 6 * 3600.0
    catch_up: bool = True
    stats: dict[str, _Stats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1}, daemon=True
        )
        self.scheduler.add_listener(self._on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        now = dt.datetime.now(UTC)
        for job_id, seconds, fn in (
            ("checkpoint", self.checkpoint_interval, self.wake_checkpoint),
            ("evaluate", self.evaluation_interval, self.wake_evaluate),
        ):
            # late by more than one interval: skip, the next one is due soon anyway
            self.scheduler.add_job(
                fn,
                IntervalTrigger(seconds=seconds, timezone=UTC),
                id=job_id,
                name=job_id,
                next_run_time=now,
                misfire_grace_time=max(1, int(seconds)),
                coalesce=True,
                max_instances=1,
            )
            self.stats[job_id] = _Stats()
        if self.context is not None:
            ctx = self.context
            for job_id, expr, fn in (
                ("monthly-export", self.monthly_export, run_monthly_export),
                ("weekly-summary", self.weekly_summary, run_weekly_summary),
                ("retention", self.retention, run_retention),
            ):
                extra = {}
                if self.catch_up and job_id == "monthly-export":
                    extra["next_run_time"] = now  # idempotent: skips when the previous month is exported
                self.scheduler.add_job(
                    self._file_job(fn, ctx),
                    CronTrigger.from_crontab(expr, timezone=UTC),
                    id=job_id,
                    name=job_id,
                    misfire_grace_time=int(self.misfire_grace_time),
                    coalesce=True,
                    max_instances=1,
                    **extra,
                )
                self.stats[job_id] = _Stats()

    @staticmethod
    def _file_job(fn: Callable[[JobContext, dt.datetime], str], ctx: JobContext) -> Callable[..., str]:
        def job(now: dt.datetime | None = None) -> str:
            return fn(ctx, now or dt.datetime.now(UTC))

        job.__name__ = fn.__name__
        return job

    def _on_event(self, event: JobExecutionEvent) -> None:
        with self._lock:
            st = self.stats.setdefault(event.job_id, _Stats())
            if event.code == EVENT_JOB_MISSED:
                st.missed += 1
                log.warning("job %s missed its run at %s", event.job_id, event.scheduled_run_time)
                return
            st.runs += 1
            st.last_run = dt.datetime.now(UTC).timestamp()
            if event.exception is not None:
                st.errors += 1
                st.last_error = repr(event.exception)
                log.error("job %s failed: %r", event.job_id, event.exception)
            else:
                st.last_result = None if event.retval is None else str(event.retval)[:500]
                if event.job_id not in ("checkpoint", "evaluate"):
                    log.info("job %s: %s", event.job_id, st.last_result)

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)  # file jobs finish: an export is never left half-written

    def run_now(self, job_id: str, now: dt.datetime | None = None) -> Any:
        """Run a file job synchronously (the CLI and tests); counts in the job table."""
        job = self.scheduler.get_job(job_id)
        if job is None:
            raise KeyError(f"no such job {job_id!r}; jobs: {sorted(j.id for j in self.scheduler.get_jobs())}")
        result = job.func(now) if now is not None else job.func()
        with self._lock:
            st = self.stats.setdefault(job_id, _Stats())
            st.runs += 1
            st.last_run = dt.datetime.now(UTC).timestamp()
            st.last_result = None if result is None else str(result)[:500]
        return result

    def jobs(self) -> list[dict[str, Any]]:
        """Every job: id, trigger, next run, runs, errors, misfires, last result (``GET /jobs``)."""
        out = []
        with self._lock:
            for job in sorted(self.scheduler.get_jobs(), key=lambda j: j.id):
                st = self.stats.get(job.id, _Stats())
                nxt = getattr(job, "next_run_time", None)
                out.append(
                    {
                        "id": job.id,
                        "trigger": str(job.trigger),
                        "next_run_time": nxt.isoformat() if nxt else None,
                        "coalesce": job.coalesce,
                        "misfire_grace_time": job.misfire_grace_time,
                        "max_instances": job.max_instances,
                        "runs": st.runs,
                        "errors": st.errors,
                        "missed": st.missed,
                        "last_run": st.last_run,
                        "last_result": st.last_result,
                        "last_error": st.last_error,
                    }
                )
        return out
