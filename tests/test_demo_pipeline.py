"""``fairwatch demo`` shows the whole loop: the Tier ≥ 2 incident starts a pipeline run on the
simulator's own loans, off the main loop, and the live table shows its stage, result and plan."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from fairwatch.monitor.snapshot import Snapshot
from fairwatch.streaming.simulator import LoanSimulator
from rich.console import Console

from fairwatch.app.config import Config
from fairwatch.app.demo import _tier_table, demo_alerts, run_demo
from fairwatch.app.demo_pipeline import DemoPipeline, PipelineRun, simulator_loan_data


@pytest.mark.slow
def test_demo_incident_starts_a_pipeline_run_shown_in_the_live_table(tmp_path):
    cfg = Config.model_validate({"metrics": {"port": 0}, "simulator": {"speed": 600}})  # embedded defaults otherwise
    console = Console(record=True, width=400, force_terminal=False)
    seen: dict[str, float] = {}
    gaps: list[float] = []
    last = [time.monotonic()]

    def on_snapshot(_snap):
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now
        runs = [json.loads(p.read_text()) for p in tmp_path.glob("pipeline/*/pipeline/run.json")]
        if runs and all("documents" in r for r in runs) and "done" not in seen:
            seen["done"] = now
        if "done" in seen and now - seen["done"] > 3:  # a few more renders after the result arrived
            os.kill(os.getpid(), signal.SIGINT)

    code = run_demo(cfg, duration=240, interval=1.0, live=True, console=console, on_snapshot=on_snapshot,
                    state_dir=tmp_path / "state", pipeline_dir=tmp_path / "pipeline")  # fmt: skip
    assert code == 0 and "done" in seen, "no pipeline run finished within the demo"
    run_dir = next((tmp_path / "pipeline").glob("run-1-*"))
    rec = json.loads((run_dir / "pipeline" / "run.json").read_text())
    assert rec["result"] in ("draft", "escalated") and rec["causal"]["dag_source"] == "proposed from data"
    assert rec["config"]["incident"]["tier"] >= 2 and rec["data"]["rows"] == 6000
    plan = run_dir / "pipeline" / "remediation_plan.md"
    assert plan.is_file() and "(DRAFT)" in plan.read_text().splitlines()[0]
    text = console.export_text()
    assert "pipeline" in text and str(plan) in text.replace("\n", "")
    # the run happened in another process: the table kept refreshing while it ran
    assert max(gaps[2:]) < 10, gaps


def test_tier_table_shows_each_runs_stage_result_and_plan(tmp_path):
    sim = LoanSimulator(seed=1)
    pipes = DemoPipeline(sim, tmp_path)
    pipes.runs["run-1-x"] = PipelineRun("run-1-x", "inc/1", "loan-approval", tmp_path, stage="in-processing")
    pipes.runs["run-2-y"] = PipelineRun("run-2-y", "inc/2", "loan-approval", tmp_path, result="draft",
                                        final="baseline", plan="/runs/run-2-y/remediation_plan.md")  # fmt: skip

    alerts = demo_alerts(Config(), sim, tmp_path)  # the demo's real alert loop, no incident yet
    console = Console(record=True, width=300)
    console.print(_tier_table(Snapshot(0.0, ()), alerts, pipes))
    text = console.export_text()
    assert "running: in-processing" in text and "draft · baseline · plan /runs/run-2-y/remediation_plan.md" in text
    pipes.close()
    alerts.close()


def test_simulator_loan_data_carries_the_served_drift():
    sim = LoanSimulator(seed=9, scenario="dp-drop", drift_at=0.0)
    df = simulator_loan_data(sim, 4000)
    assert list(df.columns) == ["race", "sex", "zip_code", "employment_history", "income", "credit_score",
                                "repaid", "approved"]  # fmt: skip
    rates = df.groupby("race")["approved"].mean()
    assert rates["Black"] < 0.8 * rates["White"]  # the dp-drop incident's data
