"""`pipeline run` end to end on synthetic loan data: artifacts, gates, escalation, plan."""

from __future__ import annotations

import json
import re
from pathlib import Path

import joblib
import pytest
import yaml
from fairwatch.intervention.cli import main
from fairwatch.intervention.gates import accuracy_loss
from fairwatch.intervention.plan import PLAN_SECTIONS
from fairwatch.intervention.synthetic import LOAN_EXPERT_KNOWLEDGE, loan_applications, loan_decisions

TEMPLATE_HEADINGS = ["Assessment Information", "Problem Summary", "Remediation Goals", "Proposed Intervention(s)",
                     "Implementation Plan", "Phases and Milestones", "Responsibilities", "Validation Strategy",
                     "Pre-Deployment Validation", "Post-Deployment Validation", "Rollback Plan", "Rollback Criteria",
                     "Rollback Procedure", "Rollback Owner", "Communication Plan", "Approval"]  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    d = tmp_path_factory.mktemp("loan")
    loan_applications(6000, seed=0).to_csv(d / "loan_data.csv", index=False)
    loan_decisions(12000, seed=1).to_csv(d / "decisions.csv", index=False)
    (d / "domain_causal_assumptions.json").write_text(json.dumps(LOAN_EXPERT_KNOWLEDGE))
    (d / "incident.json").write_text(
        json.dumps(
            {
                "id": "inc-2026-11-race-dp",
                "model": "loan-approval",
                "metric": "demographic_parity_ratio",
                "attribute": "race",
                "groups": ["Black"],
                "tier": 2,
                "windows": {"baseline": ["2026-10-01", "2026-11-01"], "current": ["2026-11-16", "2026-12-01"]},
                "value": 0.6137,
                "ci": [0.571, 0.655],
                "reason": "dp_ratio upper confidence bound 0.655 below 0.75 in the current window",
            }
        )
    )
    return d


def _config(d: Path, name: str, **extra) -> Path:
    cfg = {"data": "loan_data.csv", "protected": ["race", "sex"], "outcome": "approved", "exclude": ["repaid"],
           "expert_knowledge": "domain_causal_assumptions.json", "target_fairness": "demographic_parity",
           "repair_level": 0.8, "constraint_weight": 0.5, "model_name": "loan-approval", "output": f"runs/{name}",
           "decisions": "decisions.csv", "progress": False, **extra}  # fmt: skip
    cfg["incident"] = json.loads((d / "incident.json").read_text())
    p = d / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture(scope="module")
def passed_run(workspace):
    # the playbook's thresholds, with the intersectional outcome ratio relaxed to 0.85
    code = main(
        [
            "pipeline",
            "run",
            "--config",
            str(_config(workspace, "relaxed", gates={"intersectional_min_outcome_ratio": 0.85})),
        ]
    )
    out = workspace / "runs" / "relaxed"
    return code, out, json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def strict_run(workspace):
    code = main(
        ["pipeline", "run", "--config", str(_config(workspace, "strict", gates={"dp_ratio_min": 0.99, "f1_min": 0.95}))]
    )
    out = workspace / "runs" / "strict"
    return code, out, json.loads((out / "run.json").read_text())


def test_run_writes_every_artifact(passed_run):
    code, out, rec = passed_run
    assert code == 0 and rec["result"] == "passed"
    for rel in ("run.json", "summary.html", "causal/causal_report.json", "causal/causal_dag.dot",
                "causal/causal_dag.png", "evaluation/intersectional_report.json", "evaluation/pareto.json",
                "evaluation/pareto_frontier.png", "models/baseline.joblib", "models/final.joblib",
                "investigation.json", "investigation.md", "investigation.html",
                "remediation_plan.md", "remediation_plan.html"):  # fmt: skip
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0, rel
    assert list((out / "preprocess").glob("preprocess_report_it*.json"))
    assert list((out / "inprocess").glob("inprocess_report_*.json"))
    assert list((out / "postprocess").glob("reliability_before_*.png"))
    for png in out.rglob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = joblib.load(out / "models" / "final.joblib")
    import pandas as pd

    pred = final.predict(pd.read_csv(out.parent.parent / "loan_data.csv").head(50))
    assert set(pred.tolist()) <= {0, 1}
    html = (out / "summary.html").read_text()
    assert "passed" in html and "pareto_frontier.png" in html


def test_run_json_logs_every_decision_and_gate(passed_run):
    _, _, rec = passed_run
    kinds = [e["kind"] for e in rec["events"]]
    points = [e["point"][:1] for e in rec["events"] if e["kind"] == "decision"]
    assert {"1", "2", "3", "4"} <= set(points)
    gates = [e for e in rec["events"] if e["kind"] == "gate"]
    assert {g["gate"] for g in gates} >= {"causal_dag_validity", "preprocess_validation", "final_validation"}
    assert all("checks" in g and all("value" in c and "threshold" in c for c in g["checks"]) for g in gates)
    assert "candidate" in kinds and rec["iteration_count"] <= 3
    final = rec["final"]["metrics"]
    assert final["dp_ratio"] >= 0.8 > rec["baseline"]["metrics"]["dp_ratio"]  # the target was reached
    front = rec["evaluation"]["pareto"]["frontier"]
    assert front and set(front) <= {c["name"] for c in rec["candidates"]}


def test_escalation_after_every_alternative_failed(strict_run):
    code, out, rec = strict_run
    assert code == 1 and rec["result"] == "escalated" and rec["recommended"] is None
    per = rec["iterations_per_component"]
    assert per["inprocess"] == 3 and max(per.values()) == rec["iteration_count"] == 3  # the limit holds
    its = [it for it in rec["iterations"] if it["component"] == "inprocess"]
    assert len(its) == 3 and all(it["outcome"] == "failed" and it.get("rollback") for it in its)
    assert len([it for it in rec["iterations"] if it["component"] == "preprocess"]) <= 3
    for src in {it["params"]["source"] for it in rec["iterations"] if it["component"] == "postprocess"}:
        assert len([it for it in rec["iterations"] if it["params"].get("source") == src]) <= 3
    # the alternatives were taken: constrained LR and reductions, thresholds on the baseline
    techniques = {c["params"].get("technique") for c in rec["candidates"] if c["stage"] == "inprocess"}
    assert {"constrained_lr", "reductions"} <= techniques
    assert any(c["parent"] == "baseline" and c["stage"] == "postprocess" for c in rec["candidates"])
    assert not rec["eligible"]
    esc = [e for e in rec["events"] if e["kind"] == "escalation"]
    assert len(esc) == 1 and esc[0]["reason"] == "no candidate passed every gate"
    rows = rec["escalation"]["tradeoffs"]
    assert rows and len(rows) <= 6 and rec["escalation"]["best_tradeoff"] in {r["name"] for r in rows}
    by = {c["name"]: c for c in rec["candidates"]}
    for r in rows:  # each row says why it is not recommended: a failed check, or never finally validated
        assert r["failed_checks"] or not r["final_validated"], r["name"]
        assert r["accuracy_loss"] == pytest.approx(accuracy_loss(rec["baseline"]["metrics"], by[r["name"]]["metrics"]))
        if r["name"] != rec["escalation"]["best_tradeoff"]:  # the Pareto frontier: no row is dominated
            assert not any(c["metrics"]["accuracy"] > r["accuracy"] and c["metrics"]["dp_ratio"] > r["dp_ratio"]
                           for c in rec["candidates"]), r["name"]  # fmt: skip
    assert f"best trade-off shown: {rec['final']['name']}" in (out / "summary.html").read_text()
    md = (out / "remediation_plan.md").read_text()
    assert "### Escalation" in md and "| Candidate | Accuracy (loss) |" in md
    for r in rows:
        assert f"`{r['name']}`" in md and f"{r['accuracy']:.3f}" in md


def test_at_most_three_iterations_per_component(passed_run, strict_run):
    for _, _, rec in (passed_run, strict_run):
        per = rec["iterations_per_component"]
        assert max(per.values()) <= 3 and rec["iteration_count"] == max(per.values())
        for comp in ("preprocess", "inprocess"):
            its = [it["iteration"] for it in rec["iterations"] if it["component"] == comp]
            assert its == list(range(1, len(its) + 1)) and len(its) == per[comp]


def test_every_candidate_keeps_its_gate_results(passed_run, strict_run):
    for _, _, rec in (passed_run, strict_run):
        for c in rec["candidates"]:
            if c["stage"] != "baseline":
                assert c["gates"] and all("checks" in g for g in c["gates"]), c["name"]
            assert c["failed_checks"] == [f"{g['gate']}.{x['name']}" for g in c["gates"] for x in g["checks"]
                                          if not x["passed"]]  # fmt: skip


def test_recommendation_is_the_most_accurate_candidate_passing_every_gate(passed_run):
    _, out, rec = passed_run
    by = {c["name"]: c for c in rec["candidates"]}
    assert rec["recommended"] == rec["final"]["name"] == rec["eligible"][0]
    final = rec["final"]
    assert final["failed_checks"] == [] and final["gates"][-1]["gate"] == "final_validation"
    assert all(g["passed"] for g in final["gates"]) and len(rec["candidates"]) >= 3
    assert (
        f"<b>Recommended</b> (passes every gate, least accuracy loss): {final['name']}"
        in (out / "summary.html").read_text()
    )
    for name in rec["eligible"]:
        c = by[name]
        assert c["final_gate_passed"] and not c["failed_checks"]
        assert by[rec["recommended"]]["metrics"]["accuracy"] >= c["metrics"]["accuracy"]
    # nothing more accurate passed its final gate with a fully validated lineage
    for c in rec["candidates"]:
        if c["final_gate_passed"] and c["metrics"]["accuracy"] > rec["final"]["metrics"]["accuracy"]:
            lineage, cur = [], c
            while cur:
                lineage.append(cur)
                cur = by.get(cur["parent"]) if cur["parent"] else None
            assert any(x["failed_checks"] for x in lineage), c["name"]


def test_remediation_plan_follows_template_with_measured_numbers(passed_run):
    _, out, rec = passed_run
    md = (out / "remediation_plan.md").read_text()
    template = Path("/work/shared/templates/fairness-drift-remediation-plan.md")
    headings = TEMPLATE_HEADINGS
    if template.exists():  # the shared template, when present, is the reference
        headings = [
            re.sub(r"^#+\s*", "", h).strip()
            for h in template.read_text().splitlines()
            if re.match(r"^#{2,3} ", h) and "Intervention 1" not in h and "Table of Contents" not in h
        ]
    assert headings == list(PLAN_SECTIONS)
    for h in headings:
        assert re.search(rf"^#{{2,3}} {re.escape(h)}$", md, re.M), h
    assert re.search(r"^### Intervention 1: ", md, re.M)
    assert not re.search(r"\[[A-Z][^\]\n]*\](?!\()", md), re.findall(r"\[[^\]\n]*\](?!\()", md)
    ids = re.findall(r"FAF-\d{4}-\d{2}-\d{3}", md)
    assert ids and re.search(r"\*\*Remediation Plan ID\*\*: FAF-\d{4}-(0[1-9]|1[0-2])-\d{3}$", md, re.M)
    b, f = rec["baseline"]["metrics"], rec["final"]["metrics"]
    for v in (b["dp_ratio"], b["accuracy"], b["eo_gap"], f["dp_ratio"], f["accuracy"], f["eo_gap"], f["ece"]):
        assert f"{v:.3f}" in md, v
    for c in rec["candidates"]:
        if c["name"] in rec["chain"]:
            assert f"{c['metrics']['dp_ratio']:.3f}" in md and c["name"] in md
    inv = json.loads((out / "investigation.json").read_text())
    assert inv["id"] in md and f"{inv['metric_value']['current']:.3f}" in md
    assert "@" not in md  # no e-mail addresses, no people
    html = (out / "remediation_plan.html").read_text()
    assert "<table>" in html and "<h2>Rollback Plan</h2>" in html


def test_investigation_finds_the_injected_drift(passed_run):
    _, out, _ = passed_run
    inv = json.loads((out / "investigation.json").read_text())
    assert inv["most_affected_groups"][0] == "Black"
    assert inv["since"] in ("2026-11-09", "2026-11-10", "2026-11-11")  # drift injected on day 40
    top = inv["shifted_features"][0]
    assert (top["group"], top["feature"]) == ("Black", "credit_score")
    dec = inv["groups"]["Black"]["decomposition"]
    assert dec["total"] == pytest.approx(dec["label_shift"] + dec["behaviour"], abs=2e-6)
    assert inv["primary_driver"] == "model behaviour"


RELAXED_THRESHOLDS = {"intersectional_min_outcome_ratio": 0.85, "threshold_low": 0.1, "threshold_high": 0.9,
                      "threshold_max_spread": 0.5}  # fmt: skip


@pytest.fixture(scope="module")
def draft_run(workspace):
    """No expert knowledge; a 40-row group too small for the ratios ("Pacific")."""
    import pandas as pd

    df = pd.read_csv(workspace / "loan_data.csv")
    df.loc[df.sample(n=40, random_state=3).index, "race"] = "Pacific"
    df.to_csv(workspace / "loan_data_small_group.csv", index=False)
    cfg = {"data": "loan_data_small_group.csv", "protected": ["race", "sex"], "outcome": "approved",
           "exclude": ["repaid"], "model_name": "loan-approval", "output": "runs/draft", "progress": False,
           "gates": RELAXED_THRESHOLDS}  # fmt: skip
    p = workspace / "draft.yaml"
    p.write_text(yaml.safe_dump(cfg))
    code = main(["pipeline", "run", "--config", str(p)])
    out = workspace / "runs" / "draft"
    return code, out, json.loads((out / "run.json").read_text())


def test_without_expert_knowledge_the_run_goes_on_as_a_draft(draft_run):
    code, out, rec = draft_run
    causal = rec["causal"]
    assert causal["dag_source"] == "proposed from data" and causal["awaits_expert_review"]
    assert not causal["expert_approved"] and not causal["gate_passed"]
    assert ["race", "credit_score"] in causal["dag"]["edges"]  # found in the data: the injected credit penalty
    assert rec["result"] == "draft" and code == 4 and rec["recommended"] == rec["final"]["name"]
    assert len(rec["candidates"]) >= 3 and rec["eligible"]
    assert "4: deploy or iterate?" in [e.get("point") for e in rec["events"]]
    deploy = [e for e in rec["events"] if e.get("point") == "4: deploy or iterate?"][0]
    assert "nothing is deployed" in deploy["outcome"]
    md = (out / "remediation_plan.md").read_text()
    assert md.startswith("# Fairness Drift Remediation Plan FAF-") and "(DRAFT)" in md.splitlines()[0]
    approval = md.split("## Approval", 1)[1]
    assert "awaits expert review" in approval and "Domain Expert (causal DAG review)" in approval


def test_small_groups_are_reported_and_left_out_of_ratios(draft_run):
    _, out, rec = draft_run
    small = rec["data"]["small_groups"]
    assert "Pacific" in small["race"] and small["race"]["Pacific"] < 30
    base = rec["baseline"]["metrics"]
    srs = {g: v for g, v in base["selection_rate_by_group"].items() if g != "Pacific"}
    assert base["dp_ratio"] == pytest.approx(min(srs.values()) / max(srs.values()), abs=1e-5)
    md = (out / "remediation_plan.md").read_text()
    assert f"`race`=Pacific (n={small['race']['Pacific']})" in md and "left out of every ratio" in md


def test_ks_integrity_gates_the_other_features_and_reports_the_repaired_ones(passed_run):
    _, out, rec = passed_run
    pre = [c for c in rec["candidates"] if c["params"].get("technique") == "disparate_impact_remover"]
    assert pre
    report = json.loads((out / "preprocess" / f"preprocess_report_it{pre[0]['iteration']}.json").read_text())
    repaired = report["repaired_features_change"]
    assert set(repaired) == set(pre[0]["params"]["features"]) and all(v["repaired"] for v in repaired.values())
    assert all(v["ks_statistic"] > 0 for v in repaired.values())  # the repair moved them: reported, not gated
    ks = next(c for c in report["gate"]["checks"] if c["name"] == "ks_min_p_value")
    others = [v["p_value"] for v in report["integrity"].values() if v["kind"] == "numeric" and not v["repaired"]]
    assert ks["passed"] and ks["value"] == pytest.approx(min(others, default=1.0))
    md = (out / "remediation_plan.md").read_text()
    assert "other than those being repaired" in md
    for c in pre:  # the candidate's own record carries the repair's change, as the report does
        moved = c["params"]["repaired_features_change"]
        assert set(moved) == set(c["params"]["features"])
        if c["name"] in rec["chain"]:  # the plan states it for the proposed chain
            for f, v in moved.items():
                assert f"`{f}` (KS p {v['p_value']:.3f})" in md
    assert moved == {f: {k: repaired[f][k] for k in ("ks_statistic", "p_value")} for f in repaired}


@pytest.mark.parametrize("run", ["passed_run", "strict_run", "draft_run"])
def test_every_plan_fills_every_template_section_from_run_json(run, request):
    _, out, rec = request.getfixturevalue(run)
    md = (out / "remediation_plan.md").read_text()
    template = Path(__file__).resolve().parents[2] / "intervention" / "templates" / "remediation_plan.md"
    for h in re.findall(r"^#{2,3} (?!Table of Contents)(.+)$", template.read_text(), re.M):
        assert re.search(rf"^#{{2,3}} {re.escape(h)}$", md, re.M), h
    for h in PLAN_SECTIONS:
        section = re.split(rf"^#{{2,3}} {re.escape(h)}$", md, flags=re.M)[1]
        body = re.split(r"^#{2,3} ", section, flags=re.M)[0].strip()
        assert body or h in (
            "Proposed Intervention(s)",
            "Implementation Plan",
            "Validation Strategy",
            "Rollback Plan",
        ), h  # parents whose content is their subsections
    assert "$" not in md and not re.search(r"\[[A-Z][^\]\n]*\](?!\()", md)
    assert f"result **{rec['result']}**" in md and rec["run_id"] in md
    f = rec["final"]["metrics"]
    for v in (f["dp_ratio"], f["eo_gap"], f["accuracy"], f["f1"], rec["baseline"]["metrics"]["accuracy"]):
        assert f"{v:.3f}" in md, v
    assert rec["final"]["name"] in md and "@" not in md


def test_recommendation_at_least_matches_threshold_optimizer_alone(workspace, passed_run, strict_run, draft_run):
    from fairwatch.intervention.compare import recommendation_holds, threshold_optimizer_alone
    from fairwatch.intervention.config import load_config

    verdicts = {}
    for name, (_, out, rec) in {"relaxed": passed_run, "strict": strict_run, "draft": draft_run}.items():
        cfg = load_config(workspace / f"{name}.yaml")
        ref = threshold_optimizer_alone(cfg, out)
        # the reference is the pipeline's own threshold path on the baseline: same model, split and draws
        same = next(c for c in rec["candidates"] if c["parent"] == "baseline" and c["stage"] == "postprocess")
        assert ref["metrics"]["accuracy"] == same["metrics"]["accuracy"]
        assert ref["metrics"]["dp_ratio"] == same["metrics"]["dp_ratio"]
        verdicts[name] = v = recommendation_holds(rec, ref, cfg)
        assert v["holds"], (name, v)
    # on this data the reference meets DP >= 0.8 within 10 % accuracy (the strict run asks 0.99)
    assert verdicts["relaxed"]["reference_meets"] and verdicts["draft"]["reference_meets"]
    assert not verdicts["strict"]["reference_meets"]
    assert verdicts["relaxed"]["recommendation_meets"] and verdicts["relaxed"]["equal_or_better_accuracy"]
    # the draft run's reference fails the threshold-spread check: a validated candidate is recommended instead
    assert verdicts["draft"]["reference_fails_other_final_checks"] or verdicts["draft"]["equal_or_better_accuracy"]


def test_threshold_optimizer_reference_recomputed_by_hand(workspace, passed_run):
    """fairlearn's ThresholdOptimizer on the run's base model, split and DP ratio computed
    here without the pipeline's helpers: the same numbers as the pipeline's own candidate."""
    import numpy as np
    import pandas as pd
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairwatch.intervention.data import binary_outcome, split_data

    _, out, rec = passed_run
    cfg = rec["config"]
    base = joblib.load(out / rec["baseline"]["model_path"])
    d = pd.read_csv(workspace / "loan_data.csv")
    for a in cfg["protected"]:
        d[a] = d[a].astype(object).where(d[a].notna(), "__missing__").astype(str)
    y = binary_outcome(d[cfg["outcome"]])
    s = split_data(d, outcome=cfg["outcome"], protected=cfg["protected"], fractions=tuple(cfg["split"]),
                   random_state=cfg["seed"])  # fmt: skip
    val, test = d.iloc[s.validation].reset_index(drop=True), d.iloc[s.test].reset_index(drop=True)
    to = ThresholdOptimizer(estimator=base, constraints="demographic_parity", objective="accuracy_score",
                            grid_size=1000, prefit=True, predict_method="predict_proba")  # fmt: skip
    to.fit(val, y[s.validation], sensitive_features=val["race"].to_numpy())
    pred = np.asarray(to.predict(test, sensitive_features=test["race"].to_numpy(), random_state=cfg["seed"]))
    g = test["race"].to_numpy()
    rates = [pred[g == k].mean() for k in np.unique(g) if (g == k).sum() >= cfg["min_group_size"]]
    same = next(c for c in rec["candidates"] if c["parent"] == "baseline" and c["stage"] == "postprocess"
                and "thresholds_demographic_parity" in c["params"]["steps"])  # fmt: skip
    assert float((pred == y[s.test]).mean()) == pytest.approx(same["metrics"]["accuracy"], abs=1e-6)
    assert min(rates) / max(rates) == pytest.approx(same["metrics"]["dp_ratio"], abs=1e-6)
    # the recommendation meets the target and is at least as accurate (the data makes it non-vacuous)
    assert min(rates) / max(rates) >= 0.8 and rec["final"]["metrics"]["accuracy"] >= same["metrics"]["accuracy"]


def test_search_is_deterministic_for_a_seed(workspace, passed_run):
    code = main(["pipeline", "run", "--config", str(_config(workspace, "again", gates={
        "intersectional_min_outcome_ratio": 0.85}))])  # fmt: skip
    again = json.loads((workspace / "runs" / "again" / "run.json").read_text())
    first = passed_run[2]
    assert code == passed_run[0]
    assert [(c["name"], c["metrics"]) for c in again["candidates"]] == [
        (c["name"], c["metrics"]) for c in first["candidates"]
    ]
    assert again["final"]["name"] == first["final"]["name"]
    assert again["time_budget"]["exhausted_before"] is None


def test_time_budget_stops_starting_new_attempts(workspace):
    code = main(["pipeline", "run", "--config", str(_config(workspace, "hurried", time_budget_seconds=0.001))])
    rec = json.loads((workspace / "runs" / "hurried" / "run.json").read_text())
    assert rec["time_budget"]["exhausted_before"] is not None
    assert [c["name"] for c in rec["candidates"]] == ["baseline"] and rec["result"] == "escalated" and code == 1
    assert "time budget exhausted" in rec["escalation"]["reason"]


def test_incident_runs_quote_the_monitored_numbers(passed_run):
    _, out, _ = passed_run
    inv = json.loads((out / "investigation.json").read_text())
    m = inv["monitored"]
    assert (m["metric"], m["attribute"], m["groups"], m["tier"], m["value"]) == (
        "demographic_parity_ratio", "race", ["Black"], 2, 0.6137)  # fmt: skip
    md = (out / "investigation.md").read_text()
    assert "## What the monitor measured" in md and "0.614 [0.571, 0.655]" in md
    assert "baseline 2026-10-01 … 2026-11-01; current 2026-11-16 … 2026-12-01" in md
    assert "below 0.75 in the current window" in md
    plan = (out / "remediation_plan.md").read_text()
    assert "inc-2026-11-race-dp at tier 2" in plan and "= 0.614 (CI 0.571 … 0.655)" in plan


def test_a_strongly_repaired_feature_no_longer_blocks_the_search(workspace):
    """The issue's first case: the repaired feature's KS fails at every repair level. It is
    the repair, not corruption: the gate checks the other features and the search goes on."""
    import pandas as pd

    df = pd.read_csv(workspace / "loan_data.csv")
    df.loc[df["race"] == "Black", "credit_score"] -= 80  # a large historical penalty on the biased mediator
    df.to_csv(workspace / "loan_data_penalty.csv", index=False)
    code = main(["pipeline", "run", "--config", str(_config(workspace, "penalty", data="loan_data_penalty.csv"))])
    rec = json.loads((workspace / "runs" / "penalty" / "run.json").read_text())
    pre = [c for c in rec["candidates"] if c["params"].get("technique") == "disparate_impact_remover"]
    assert pre
    report = json.loads((workspace / "runs" / "penalty" / "preprocess" / "preprocess_report_it1.json").read_text())
    assert report["repaired_features_change"]["credit_score"]["p_value"] <= 0.05  # the repair moved it a lot
    ks = next(c for c in pre[0]["gates"][0]["checks"] if c["name"] == "ks_min_p_value")
    assert ks["passed"]  # ... and that is not corruption
    assert {c["stage"] for c in rec["candidates"]} >= {"preprocess", "postprocess"}
    assert code in (0, 1, 4) and len(rec["candidates"]) >= 3


def test_thresholds_alone_on_the_baseline_are_tried_when_the_baseline_meets_the_target(workspace):
    """The reference a recommendation must beat is a candidate even when post-processing of
    the baseline needed only calibration (German credit by age escalated below it before)."""
    code = main(["pipeline", "run", "--config", str(_config(workspace, "lenient", gates={"dp_ratio_min": 0.5}))])
    rec = json.loads((workspace / "runs" / "lenient" / "run.json").read_text())
    assert rec["baseline"]["metrics"]["dp_ratio"] >= 0.5  # the baseline meets this target
    ref = [c for c in rec["candidates"] if c["parent"] == "baseline" and c["params"].get("steps") == [
        "thresholds_demographic_parity"]]  # fmt: skip
    assert len(ref) == 1
    base_its = [it for it in rec["iterations"] if it["params"].get("source") == "baseline"]
    assert 1 <= len(base_its) <= 3 and base_its[-1]["candidate"] == ref[0]["name"]
    assert code in (0, 1, 4)
