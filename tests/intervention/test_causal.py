"""Causal analysis on the loan walkthrough's DAG and the Adult DAG."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest
from fairwatch.intervention.causal import (
    backdoor_adjustment_set,
    build_dag,
    causal_analysis,
    classify_variables,
    e_value,
    load_expert_knowledge,
    robustness_value,
    write_dot,
)
from fairwatch.intervention.errors import PipelineInputError
from fairwatch.intervention.synthetic import LOAN_EXPERT_KNOWLEDGE

DATA = Path(__file__).resolve().parents[1] / "data"


def test_loan_roles_and_recommendation(loans):
    feats = ["zip_code", "education", "employment_history", "income", "credit_score"]
    rep, g, roles = causal_analysis(loans, protected=["race", "sex"], outcome="approved",
                                    outcome_values=loans["approved"].to_numpy(), features=feats,
                                    knowledge=LOAN_EXPERT_KNOWLEDGE)  # fmt: skip
    assert set(rep["mediators"]) == {"zip_code", "education", "employment_history", "income", "credit_score"}
    assert rep["confounders"] == []  # nothing causes race or sex in this DAG
    assert "zip_code" in rep["proxies"] and "zip_code" in rep["data_driven_proxies"]
    assert rep["resolving"] == ["employment_history"]
    assert rep["biased_mediators"] == ["credit_score"]
    stages = [p["stage"] for p in rep["recommendation"]["intervention_points"]]
    assert stages == ["preprocess", "inprocess", "postprocess"] and rep["recommendation"]["strategy"] == "hybrid"
    assert rep["adjustment_sets"] == {"race": [], "sex": []}
    s = rep["sensitivity"]["race"]
    assert s["reference_group"] in ("White", "Asian") and s["e_value"] > 1.5
    assert 0 < s["robustness_value_alpha_0_05"] < s["robustness_value"] < 1
    assert all(e["supported"] for e in rep["edge_checks"] if e["edge"] == ["race", "zip_code"])
    assert roles["race"] == "protected" and roles["zip_code"] == "proxy"


def test_backdoor_set_blocks_confounding():
    g = nx.DiGraph([("region", "race"), ("region", "income"), ("race", "income"), ("income", "y"), ("region", "y")])
    z = backdoor_adjustment_set(g, "race", "y")
    assert z == ["region"]
    assert backdoor_adjustment_set(g, "income", "y") in (["region"], ["race", "region"])
    assert nx.is_d_separator(nx.DiGraph([e for e in g.edges if e[0] != "race"]), {"race"}, {"y"}, set(z))


def test_classify_confounder_vs_mediator():
    g = nx.DiGraph([("c", "a"), ("c", "y"), ("a", "m"), ("m", "y")])
    r = classify_variables(g, protected=["a"], outcome="y")
    assert r["confounders"] == ["c"] and r["mediators"] == ["m"]


def test_sensitivity_formulas():
    assert e_value(2.0) == pytest.approx(2 + 2**0.5)
    assert e_value(0.5) == e_value(2.0)
    # Cinelli & Hazlett (2020) Darfur example: t = 4.18, 783 dof → RV = 0.139, RV_{α=.05} = 0.076
    assert robustness_value(4.18, 783) == pytest.approx(0.1386, abs=5e-4)
    assert robustness_value(4.18, 783, alpha=0.05) == pytest.approx(0.0760, abs=5e-4)
    assert robustness_value(1.0, 783, alpha=0.05) == 0.0


def test_expert_knowledge_errors(tmp_path):
    with pytest.raises(PipelineInputError, match=r"--expert-knowledge: cannot read"):
        load_expert_knowledge(tmp_path / "nope.json")
    with pytest.raises(PipelineInputError, match=r"--expert-knowledge: 'proxy' is invalid: unknown key"):
        load_expert_knowledge({"edges": [], "proxy": ["x"]})
    with pytest.raises(PipelineInputError, match=r"the graph has a cycle"):
        build_dag({"edges": [["a", "b"], ["b", "a"]]}, protected=["a"], outcome="y")


def test_adult_dag_and_dot_file(adult, tmp_path):
    know = load_expert_knowledge(DATA / "adult_expert_knowledge.json")
    feats = [c for c in adult.columns if c not in ("race", "sex", "income")]
    rep, g, roles = causal_analysis(
        adult,
        protected=["sex", "race"],
        outcome="income",
        outcome_values=adult["income"].to_numpy(),
        features=feats,
        knowledge=know,
    )
    assert "relationship" in rep["proxies"] and "relationship" in rep["data_driven_proxies"]
    assert rep["sensitivity"]["sex"]["e_value"] > 3  # the sex gap in income is large
    dot = write_dot(g, roles, tmp_path / "dag.dot").read_text()
    assert dot.startswith("digraph causal_dag {") and '"sex" -> "relationship";' in dot
    assert dot.count("->") == g.number_of_edges()
    json.dumps(rep)  # serializable
