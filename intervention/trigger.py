"""Pipeline runs triggered by incidents: a bounded process pool, one run per incident.

The daemon (alerts layer) calls :meth:`PipelineQueue.enqueue` for Tier ≥ 2 incidents
and exports :meth:`PipelineQueue.results` as ``fairness_pipeline_runs_total{result}``.
An incident is a dict with ``id`` and a ``pipeline`` mapping (the keys of
``pipeline.yaml``), plus the incident fields the investigation reads (``model``,
``metric``, ``attribute``, ``groups``, ``windows``). Each run is an APScheduler job
that executes in a separate process (APScheduler's process-pool executor, spawn
context, ``max_concurrent`` workers) and writes ``run_dir/<run id>/``.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ProcessPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

__all__ = ["RESULTS", "PipelineQueue", "run_incident"]

log = logging.getLogger("fairwatch.intervention.trigger")

RESULTS = ("passed", "draft", "escalated", "failed")


def _slug(text: str) -> str:
    """A file-name-safe form of an incident id.

    >>> _slug("inc/42: race DP")
    'inc-42-race-DP'
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "incident"


def run_incident(incident: dict[str, Any], run_path: str) -> str:
    """Run the pipeline for one incident (in the worker process); returns the result."""
    from .config import PipelineConfig
    from .pipeline import run_pipeline

    raw = dict(incident.get("pipeline") or {})
    raw["output"] = run_path
    raw.setdefault("progress", False)
    raw.setdefault("incident", {k: v for k, v in incident.items() if k != "pipeline"})
    cfg = PipelineConfig.from_mapping(raw)
    return str(run_pipeline(cfg)["result"])


class PipelineQueue:
    """Bounded-concurrency queue of pipeline runs, one per incident id.

    >>> q = PipelineQueue(max_concurrent=1, run_dir="/tmp/fairwatch-doctest-runs")
    >>> q.results()
    {'passed': 0, 'draft': 0, 'escalated': 0, 'failed': 0}
    >>> q.shutdown()
    """

    def __init__(self, max_concurrent: int = 1, run_dir: str | Path = "pipeline-runs") -> None:
        if int(max_concurrent) < 1:
            raise ValueError(f"max_concurrent: {max_concurrent!r} must be >= 1")
        self.max_concurrent = int(max_concurrent)
        self.run_dir = Path(run_dir)
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        self._runs: dict[str, str] = {}  # incident id -> run id
        self._pending: set[str] = set()  # run ids queued or running
        self._counts: Counter[str] = Counter()
        self._by_model: Counter[tuple[str, str]] = Counter()
        self._models: dict[str, str] = {}  # run id → incident model
        self._scheduler: BackgroundScheduler | None = None

    def _jobs(self) -> BackgroundScheduler:
        if self._scheduler is None:
            pool = ProcessPoolExecutor(
                self.max_concurrent, pool_kwargs={"mp_context": multiprocessing.get_context("spawn")}
            )
            self._scheduler = BackgroundScheduler(
                executors={"default": pool},
                # a run waits for a free worker however long that takes; it is never skipped
                job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1},
            )
            self._scheduler.add_listener(self._done, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
            self._scheduler.start()
        return self._scheduler

    def enqueue(self, incident: dict[str, Any]) -> str | None:
        """Start a run for ``incident``; ``None`` if this incident already has one."""
        inc_id = str(incident.get("id") or "")
        if not inc_id:
            raise ValueError("incident: needs a non-empty 'id'")
        with self._lock:
            if inc_id in self._runs:
                return None
            run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{_slug(inc_id)}"
            self._runs[inc_id] = run_id
            self._models[run_id] = str(incident.get("model") or "")
            self._pending.add(run_id)
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jobs().add_job(
            run_incident, args=[dict(incident), str(self.run_dir / run_id)], id=run_id, name=f"pipeline {inc_id}"
        )
        log.info("pipeline run %s queued for incident %s", run_id, inc_id)
        return run_id

    def _done(self, event: JobExecutionEvent) -> None:
        run_id = event.job_id
        if event.exception is not None or event.code != EVENT_JOB_EXECUTED:
            # a crashed run is a failed run; the daemon keeps going
            log.error("pipeline run %s failed: %r", run_id, event.exception)
            result = "failed"
        else:
            result = event.retval if event.retval in RESULTS else "failed"
        with self._lock:
            self._pending.discard(run_id)
            self._counts[result] += 1
            self._by_model[(self._models.get(run_id, ""), result)] += 1
            self._finished.notify_all()

    def results_by_model(self) -> dict[tuple[str, str], int]:
        """Finished runs by (incident model, result)."""
        with self._lock:
            return dict(self._by_model)

    def results(self) -> dict[str, int]:
        """Finished runs by result (``passed``, ``draft``, ``escalated``, ``failed``)."""
        with self._lock:
            return {r: int(self._counts[r]) for r in RESULTS}

    def pending(self) -> int:
        """Runs queued or running."""
        with self._lock:
            return len(self._pending)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued run finished (or ``timeout``); True if all done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._finished:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._finished.wait(left)
        return True

    def shutdown(self, wait: bool = True) -> None:
        """Stop the scheduler and its worker processes."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=wait)
            self._scheduler = None
