"""The playbook's loan walkthrough on the streaming simulator's own data (the monitored world).

``intervention`` may not import ``streaming`` (layering), so it ships its own seeded loan
generator; this test closes the loop with the data the daemon actually monitors: the
simulator's applicants, features, decisions and repayment labels, through ``fairwatch
pipeline run``, producing every artifact.
"""

from __future__ import annotations

import json

import yaml
from fairwatch.intervention.cli import main
from fairwatch.streaming.simulator import LoanSimulator

#: The walkthrough's causal assumptions, on the simulator's variables (it has no education).
KNOWLEDGE = {
    "description": "Causal assumptions of the simulated loan world.",
    "approved": True,
    "edges": [
        ["race", "zip_code"],
        ["race", "credit_score"],
        ["sex", "employment_history"],
        ["zip_code", "income"],
        ["employment_history", "income"],
        ["income", "credit_score"],
        ["credit_score", "approved"],
        ["income", "approved"],
        ["employment_history", "approved"],
    ],
    "proxies": ["zip_code"],
    "resolving": ["employment_history"],
    "biased_mediators": ["credit_score"],
}


def test_pipeline_run_on_the_simulators_loan_data(tmp_path):
    frame = LoanSimulator(seed=9).decisions_frame(6000)
    data = frame.rename(columns={"decision": "approved", "label": "repaid"})[
        ["race", "sex", "zip_code", "employment_history", "income", "credit_score", "repaid", "approved"]
    ]
    data.to_csv(tmp_path / "loan_data.csv", index=False)
    (tmp_path / "knowledge.json").write_text(json.dumps(KNOWLEDGE))
    cfg = {
        "data": str(tmp_path / "loan_data.csv"),
        "protected": ["race", "sex"],
        "outcome": "approved",
        "exclude": ["repaid"],
        "expert_knowledge": str(tmp_path / "knowledge.json"),
        "target_fairness": "demographic_parity",
        "model_name": "loan-approval",
        "output": str(tmp_path / "run"),
        "progress": False,
        "incident": {
            "id": "sim-dp-drop",
            "model": "loan-approval",
            "metric": "demographic_parity_ratio",
            "attribute": "race",
            "groups": ["Black"],
            "tier": 2,
        },
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    code = main(["pipeline", "run", "--config", str(tmp_path / "pipeline.yaml")])
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    # 1 = escalated, 4 = draft (the approved DAG's causal gate failed on this data: E-value)
    assert {"passed": 0, "draft": 4, "escalated": 1}[run["result"]] == code
    assert run["causal"]["expert_approved"]
    if run["result"] == "draft":
        assert not run["causal"]["gate_passed"] and run["recommended"] == run["final"]["name"]
    files = {p.name for p in (tmp_path / "run").rglob("*") if p.is_file()}
    for needed in ("run.json", "summary.html"):
        assert needed in files
    assert any(f.endswith(".dot") for f in files) and any(f.endswith(".png") for f in files)
    assert any(f.endswith(".joblib") for f in files)
    assert any("remediation" in f.lower() and f.endswith(".md") for f in files)
