"""The demo's intervention pipeline: a Tier ≥ 2 incident starts a run on the simulator's loans.

``DemoPipeline.enqueue`` is the alert loop's ``enqueue`` hook. It takes a labeled sample
of the simulator's applicants and decisions *as they are served now* (so a ``dp-drop``
incident's data carries the drift), writes it into the run folder and starts the run in
a separate process (spawn), so the live table never waits for it. The worker reports
each stage, the result and the remediation plan's path through a queue that
:meth:`DemoPipeline.poll` drains without blocking. No expert DAG is given: the causal
stage proposes one from the data, so the run ends as a *draft* (or escalates) and
nothing it finds is deployed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fairwatch.streaming.simulator import LoanSimulator

__all__ = ["DemoPipeline", "PipelineRun", "simulator_loan_data", "SIMULATOR_PIPELINE"]

log = logging.getLogger("fairwatch.demo")

#: pipeline.yaml keys for the simulator's loan data (``repaid`` is the true outcome, not a feature)
SIMULATOR_PIPELINE: dict[str, Any] = {
    "protected": ["race", "sex"],
    "outcome": "approved",
    "exclude": ["repaid"],
    "target_fairness": "demographic_parity",
    "progress": False,
    "time_budget_seconds": 120.0,
}


def simulator_loan_data(sim: LoanSimulator, n: int = 6000) -> pd.DataFrame:
    """``n`` labeled applications decided by the version the simulator serves now.

    Columns: the protected attributes, the model's features, ``repaid`` (the true
    outcome) and ``approved`` (the served decision, the pipeline's outcome).
    """
    frame = sim.decisions_frame(n)
    cols = ["race", "sex", "zip_code", "employment_history", "income", "credit_score", "label", "decision"]
    out = frame[cols].rename(columns={"decision": "approved", "label": "repaid"})
    return out.astype({"race": str, "sex": str})


def _worker(raw: dict[str, Any], run_id: str, q: Any) -> None:
    """Run one pipeline in the child process; every message is (run id, kind, value)."""
    from fairwatch.intervention.config import PipelineConfig
    from fairwatch.intervention.pipeline import run_pipeline

    os.nice(10)  # the demo's live loop keeps the CPU it needs
    try:
        cfg = PipelineConfig.from_mapping(raw)
        rec = run_pipeline(cfg, on_stage=lambda name: q.put((run_id, "stage", name)))
        plan = Path(cfg.output) / "remediation_plan.md"
        q.put((run_id, "done", {"result": rec["result"], "final": rec["final"]["name"],
                                "plan": str(plan) if plan.exists() else None}))  # fmt: skip
    except Exception as exc:  # a failed run is reported in the table; the demo goes on
        q.put((run_id, "failed", f"{type(exc).__name__}: {exc}"))


@dataclass
class PipelineRun:
    run_id: str
    incident: str
    model: str
    folder: Path
    stage: str = "queued"
    result: str | None = None
    final: str | None = None
    plan: str | None = None
    error: str | None = None
    process: Any = field(default=None, repr=False)

    def status(self) -> str:
        if self.error:
            return f"failed: {self.error}"
        if self.result is None:
            return f"running: {self.stage}"
        return f"{self.result} · {self.final} · plan {self.plan or 'not written'}"


class DemoPipeline:
    """Pipeline runs started by the demo's incidents, one per incident, off the main loop."""

    def __init__(self, sim: LoanSimulator, run_dir: str | Path, *, rows: int = 6000) -> None:
        self.sim = sim
        self.run_dir = Path(run_dir)
        self.rows = rows
        self.runs: dict[str, PipelineRun] = {}
        self._ctx = multiprocessing.get_context("spawn")
        self._queue = self._ctx.Queue()

    def enqueue(self, incident: dict[str, Any]) -> str | None:
        """The alert loop's hook: start a run for ``incident`` unless it has one."""
        inc_id = str(incident.get("id") or "incident")
        if any(r.incident == inc_id for r in self.runs.values()):
            return None
        run_id = f"run-{len(self.runs) + 1}-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", inc_id).strip("-")[:60] or "incident")
        folder = self.run_dir / run_id
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "loan_data.csv"
        simulator_loan_data(self.sim, self.rows).to_csv(data, index=False)  # main thread: the simulator is not shared
        raw = {**SIMULATOR_PIPELINE, "data": [str(data)], "output": str(folder / "pipeline"),
               "model_name": str(incident.get("model") or self.sim.model),
               "incident": {k: v for k, v in incident.items() if k != "pipeline"}}  # fmt: skip
        proc = self._ctx.Process(target=_worker, args=(raw, run_id, self._queue), daemon=True, name=run_id)
        self.runs[run_id] = PipelineRun(run_id, inc_id, str(incident.get("model") or ""), folder, process=proc)
        proc.start()
        log.info("pipeline run %s started for incident %s", run_id, inc_id)
        return run_id

    def poll(self) -> None:
        """Apply the workers' messages (never blocks)."""
        while True:
            try:
                run_id, kind, value = self._queue.get_nowait()
            except queue.Empty:
                break
            run = self.runs.get(run_id)
            if run is None:
                continue
            if kind == "stage":
                run.stage = str(value)
            elif kind == "done":
                run.result, run.final, run.plan = value["result"], value["final"], value["plan"]
            else:
                run.error = str(value)
            log.info("pipeline run %s: %s", run_id, run.status())
        for run in self.runs.values():
            p = run.process
            if run.result is None and run.error is None and p is not None and not p.is_alive() and p.exitcode:
                run.error = f"worker exited with code {p.exitcode}"

    def wait(self, timeout: float) -> bool:
        """Wait for every run's process (tests, shutdown); True if all finished."""
        for run in self.runs.values():
            if run.process is not None:
                run.process.join(timeout)
        self.poll()
        return all(r.process is None or not r.process.is_alive() for r in self.runs.values())

    def close(self) -> None:
        """Stop runs still going (the demo is ending) and release the queue."""
        for run in self.runs.values():
            p = run.process
            if p is not None and p.is_alive():
                p.terminate()
                p.join(5)
        self._queue.close()
