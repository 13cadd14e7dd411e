"""Tier ≥ 2 incidents start an intervention pipeline run, exported as fairness_pipeline_runs_total."""

from __future__ import annotations

from fairwatch.intervention.synthetic import LOAN_EXPERT_KNOWLEDGE, loan_applications
from fairwatch.intervention.trigger import PipelineQueue
from fairwatch.monitor.engine import Engine
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay

from fairwatch.app.config import load_config
from fairwatch.app.daemon import Daemon
from fairwatch.app.demo import demo_alerts


def test_dp_drop_incident_runs_the_pipeline_once_and_the_daemon_exports_it(tmp_path):
    loan_applications(2500, seed=3).to_csv(tmp_path / "loans.csv", index=False)
    pipeline = {
        "data": str(tmp_path / "loans.csv"),
        "protected": ["race", "sex"],
        "outcome": "approved",
        "exclude": ["repaid"],
        "expert_knowledge": LOAN_EXPERT_KNOWLEDGE,
    }
    config = load_config(env={"FAIRWATCH_STATE__URL": f"sqlite:///{tmp_path}/state.db"})
    config = config.model_copy(update={"alerts": config.alerts.model_copy(update={"pipeline": pipeline})})
    sim = LoanSimulator(
        seed=4, rate=10.0, scenario="dp-drop", drift_at=3600.0, delay=OutcomeDelay(kind="lognormal", median_s=600.0)
    )
    queue = PipelineQueue(max_concurrent=1, run_dir=tmp_path / "runs")
    try:
        loop = demo_alerts(config, sim, tmp_path)
        loop.responder.enqueue = queue.enqueue
        engine = Engine(config.engine_settings())
        for _ in range(int(3 * 3600 / 30)):  # 3 simulated hours, evaluated every 30 s
            b = sim.advance_batch(30.0)
            engine.process(decisions=b.topic_values(False), outcomes=b.topic_values(True))
            loop.evaluate(engine.snapshot(now=sim.now), engine)
            if loop.responder.pipeline_enqueued:
                break
        incidents = loop.responder.pipeline_enqueued
        assert len(incidents) >= 1, "the dp-drop should reach Tier ≥ 2 and enqueue a run"
        assert queue.wait(timeout=240)
        runs = queue.results_by_model()
        assert sum(runs.values()) == len(set(incidents))
        assert {m for m, _ in runs} == {sim.model}
        # The daemon exports the same counts.
        daemon = Daemon(config)
        daemon.pipelines = queue
        daemon._publish()
        snap = daemon.board.read()
        samples = snap.select("fairness_pipeline_runs_total")
        exported = {(s.labels["model"], s.labels["result"]): s.value for s in samples}
        assert exported == {k: float(v) for k, v in runs.items()}
        daemon.store.close()
    finally:
        queue.shutdown()
