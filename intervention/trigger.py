"""Pipeline runs triggered by incidents: a bounded process pool, one run per incident.

The daemon (alerts layer) calls :meth:`PipelineQueue.enqueue` for Tier ≥ 2 incidents
and exports :meth:`PipelineQueue.results` as ``fairness_pipeline_runs_total{result}``.
An incident is a dict with ``id`` and a ``pipeline`` mapping (the keys of
``pipeline.yaml``), plus the incident fields the investigation reads (``model``,
``metric``, ``attribute``, ``groups``, ``windows``). Each run executes in a separate
process (``concurrent.futures.ProcessPoolExecutor``, spawn context) and writes
``run_dir/<run id>/``.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "PipelineQueue", "run_incident"]

log = logging.getLogger("fairwatch.intervention.trigger")

RESULTS = ("passed", "escalated", "failed")


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
    {'passed': 0, 'escalated': 0, 'failed': 0}
    >>> q.shutdown()
    """

    def __init__(self, max_concurrent: int = 1, run_dir: str | Path = "pipeline-runs") -> None:
        if int(max_concurrent) < 1:
            raise ValueError(f"max_concurrent: {max_concurrent!r} must be >= 1")
        self.max_concurrent = int(max_concurrent)
        self.run_dir = Path(run_dir)
        self._lock = threading.Lock()
        self._runs: dict[str, str] = {}  # incident id -> run id
        self._futures: dict[str, Future[str]] = {}
        self._counts: Counter[str] = Counter()
        self._by_model: Counter[tuple[str, str]] = Counter()
        self._models: dict[str, str] = {}  # run id → incident model
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.max_concurrent, mp_context=multiprocessing.get_context("spawn")
            )
        return self._executor

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
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fut = self._pool().submit(run_incident, dict(incident), str(self.run_dir / run_id))
            self._futures[run_id] = fut
        fut.add_done_callback(lambda f, r=run_id: self._done(r, f))
        log.info("pipeline run %s queued for incident %s", run_id, inc_id)
        return run_id

    def _done(self, run_id: str, fut: Future[str]) -> None:
        try:
            result = fut.result()
            result = result if result in RESULTS else "failed"
        except Exception:  # a crashed run is a failed run; the daemon keeps going
            log.exception("pipeline run %s failed", run_id)
            result = "failed"
        with self._lock:
            self._counts[result] += 1
            self._by_model[(self._models.get(run_id, ""), result)] += 1

    def results_by_model(self) -> dict[tuple[str, str], int]:
        """Finished runs by (incident model, result)."""
        with self._lock:
            return dict(self._by_model)

    def results(self) -> dict[str, int]:
        """Finished runs by result (``passed``, ``escalated``, ``failed``)."""
        with self._lock:
            return {r: int(self._counts[r]) for r in RESULTS}

    def pending(self) -> int:
        """Runs queued or running."""
        with self._lock:
            return sum(not f.done() for f in self._futures.values())

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued run finished (or ``timeout``); True if all done."""
        with self._lock:
            futs = list(self._futures.values())
        _, not_done = futures_wait(futs, timeout=timeout)
        # done-callbacks run in a helper thread; let them record before returning
        for f in futs:
            if f.done():
                f.exception()
        deadline = datetime.now(UTC).timestamp() + 5
        while datetime.now(UTC).timestamp() < deadline:
            with self._lock:
                if sum(self._counts.values()) >= len(futs) - len(not_done):
                    break
            threading.Event().wait(0.01)
        return not not_done

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool (waiting for running runs unless ``wait=False``)."""
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=not wait)
            self._executor = None
