"""PipelineQueue: one run per incident, separate processes, counts by result."""

from __future__ import annotations

import json
import os

from fairwatch.intervention.synthetic import LOAN_EXPERT_KNOWLEDGE, loan_applications
from fairwatch.intervention.trigger import PipelineQueue


def test_queue_runs_each_incident_once_in_another_process(tmp_path):
    loan_applications(2500, seed=2).to_csv(tmp_path / "loans.csv", index=False)
    pipeline = {"data": str(tmp_path / "loans.csv"), "protected": ["race", "sex"], "outcome": "approved",
                "exclude": ["repaid"], "expert_knowledge": LOAN_EXPERT_KNOWLEDGE}  # fmt: skip
    q = PipelineQueue(max_concurrent=1, run_dir=tmp_path / "runs")
    try:
        # shaped as the daemon enqueues it (alerts/actions.py)
        incident = {"id": "inc-1", "model": "loan-approval", "metric": "demographic_parity_ratio", "attribute": "race",
                    "tier": 2, "windows": {"1h": 2, "24h": 1}, "value": 0.641, "ci": [0.6, 0.68],
                    "reason": "dp_ratio below the tier-2 bound in 1h", "groups": [], "pipeline": pipeline}  # fmt: skip
        first = q.enqueue(incident)
        assert first is not None and first.endswith("inc-1")
        assert q.enqueue({"id": "inc-1", "attribute": "race", "pipeline": pipeline}) is None
        bad = q.enqueue({"id": "inc-2", "pipeline": {**pipeline, "data": str(tmp_path / "missing.csv")}})
        assert bad is not None
        assert q.wait(timeout=240)
        counts = q.results()
        assert counts["failed"] == 1 and counts["passed"] + counts["draft"] + counts["escalated"] == 1
        rec = json.loads((tmp_path / "runs" / first / "run.json").read_text())
        assert rec["pid"] != os.getpid()  # ran in a worker process
        assert rec["result"] in ("passed", "draft", "escalated") and counts[rec["result"]] == 1
        plan = (tmp_path / "runs" / first / "remediation_plan.md").read_text()
        assert (
            "incident inc-1 at tier 2" in plan
            and "= 0.641 (CI 0.600 … 0.680) in windows 1h: tier 2, 24h: tier 1" in plan
        )
        assert "evidence: dp_ratio below the tier-2 bound in 1h" in plan
        assert q.pending() == 0
    finally:
        q.shutdown()
