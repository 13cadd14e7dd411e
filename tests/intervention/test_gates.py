"""Every gate passes and fails on constructed inputs, with the playbook's rollback."""

from __future__ import annotations

import pytest
from fairwatch.intervention.errors import PipelineInputError
from fairwatch.intervention.gates import (
    GateThresholds,
    causal_gate,
    inprocess_gate,
    postprocess_gate,
    preprocess_gate,
)

T = GateThresholds()
BASE = {"accuracy": 0.86, "precision": 0.8, "recall": 0.7, "f1": 0.75, "dp_ratio": 0.67, "eo_gap": 0.18,
        "eop_gap": 0.1, "ece": 0.04, "max_group_ece": 0.06, "intersectional_min_dp_ratio": 0.6,
        "worst_accuracy_deviation": 0.02, "worst_outcome_ratio": 0.95}  # fmt: skip
GOOD_INTEGRITY = {"credit_score": {"kind": "numeric", "p_value": 0.14, "new_missing": 0, "outlier_rate_before": 0.01,
                                   "outlier_rate_after": 0.012}}  # fmt: skip


def causal_report(e=2.1, approved=True, leaked=()):
    return {"primary_attribute": "race", "expert_approved": approved, "protected_in_model_features": list(leaked),
            "sensitivity": {"race": {"e_value": e}}}  # fmt: skip


def test_causal_gate():
    assert causal_gate(causal_report(), T).passed
    g = causal_gate(causal_report(e=1.4), T)
    assert not g.passed and g.failed_checks() == ["e_value"] and g.on_fail["destination"] == "escalate"
    assert causal_gate(causal_report(approved=False), T).failed_checks() == ["dag_expert_approved"]
    assert causal_gate(causal_report(leaked=["race"]), T).failed_checks() == ["protected_attributes_in_model"]


def _pre(after, integrity=GOOD_INTEGRITY, technique="disparate_impact_remover", level=0.8):
    return preprocess_gate(BASE, {**BASE, **after}, integrity, target="demographic_parity", technique=technique,
                           repair_level=level, t=T)  # fmt: skip


def test_preprocess_gate_pass_and_each_failure():
    # playbook walkthrough: DP 0.67 → 0.79 (+18 %), accuracy 0.86 → 0.84 (−2.3 %), KS p = 0.14
    ok = _pre({"dp_ratio": 0.79, "accuracy": 0.84, "intersectional_min_dp_ratio": 0.7})
    assert ok.passed and ok.on_fail is None
    weak = _pre({"dp_ratio": 0.70, "accuracy": 0.85})
    assert weak.failure_modes == ["fairness_insufficient"]
    assert weak.on_fail["set"] == {"preprocess_technique": "reweighing"}
    costly = _pre({"dp_ratio": 0.85, "accuracy": 0.80})
    assert "utility_cost" in costly.failure_modes and costly.on_fail["destination"] == "causal"
    bad_ks = {"credit_score": {**GOOD_INTEGRITY["credit_score"], "p_value": 0.01}}
    drift = _pre({"dp_ratio": 0.79, "accuracy": 0.84}, integrity=bad_ks)
    assert drift.failure_modes == ["data_integrity"]
    assert drift.on_fail["set"] == {"repair_level": 0.6} and drift.on_fail["destination"] == "preprocess"
    inter = _pre({"dp_ratio": 0.79, "accuracy": 0.84, "intersectional_min_dp_ratio": 0.5})
    assert inter.failure_modes == ["intersectional_disparity"]
    # the playbook checks the features *other than* the repaired ones: a repaired feature's change is reported
    repaired = {**GOOD_INTEGRITY, "income": {**GOOD_INTEGRITY["credit_score"], "p_value": 0.001, "repaired": True}}
    ok_repaired = _pre({"dp_ratio": 0.79, "accuracy": 0.84, "intersectional_min_dp_ratio": 0.7}, integrity=repaired)
    assert ok_repaired.passed
    assert next(c for c in ok_repaired.checks if c.name == "ks_min_p_value").value == 0.14
    unrepaired = {**repaired, "income": {**repaired["income"], "repaired": False}}
    assert _pre({"dp_ratio": 0.79, "accuracy": 0.84}, integrity=unrepaired).failure_modes == ["data_integrity"]
    missing = {"credit_score": {**GOOD_INTEGRITY["credit_score"], "new_missing": 3}}
    assert _pre({"dp_ratio": 0.79, "accuracy": 0.84}, integrity=missing).failed_checks() == ["new_missing_values"]


def _in(after, conv=True, w=0.5, technique="constrained_lr"):
    return inprocess_gate(BASE, {**BASE, **after}, {"converged": conv}, target="demographic_parity",
                          technique=technique, constraint_weight=w, t=T)  # fmt: skip


def test_inprocess_gate_pass_and_each_failure():
    assert _in({"dp_ratio": 0.82, "accuracy": 0.80}).passed  # 7 % loss is within 8 %
    unfair = _in({"dp_ratio": 0.75, "accuracy": 0.84})
    assert unfair.failure_modes == ["fairness_insufficient"] and unfair.on_fail["set"] == {"constraint_weight": 0.7}
    costly = _in({"dp_ratio": 0.85, "accuracy": 0.78})
    assert costly.failure_modes == ["utility_cost"] and costly.on_fail["set"] == {"constraint_weight": 0.3}
    both = _in({"dp_ratio": 0.7, "accuracy": 0.78})
    assert both.on_fail["set"] == {"inprocess_technique": "reductions"}
    assert _in({"dp_ratio": 0.85, "accuracy": 0.84}, conv=False).failure_modes == ["convergence"]
    assert _in({"dp_ratio": 0.85, "f1": 0.6}).failed_checks() == ["f1"]
    maxed = _in({"dp_ratio": 0.7}, w=1.0)
    assert maxed.on_fail["set"] == {"inprocess_technique": "reductions"}


def _post(after, thresholds=None, method="platt"):
    return postprocess_gate(BASE, {**BASE, **after}, thresholds=thresholds, target="demographic_parity",
                            calibration_method=method, constraint_weight=0.5, t=T)  # fmt: skip


def test_postprocess_gate_pass_and_each_failure():
    good = {"dp_ratio": 0.82, "accuracy": 0.80, "ece": 0.04, "max_group_ece": 0.05}
    assert _post(good, thresholds={"in_range": True, "spread": 0.04}).passed
    cal = _post({**good, "ece": 0.09, "max_group_ece": 0.14})
    assert cal.failure_modes == ["calibration"] and cal.on_fail["set"] == {"calibration": "isotonic"}
    assert _post({**good, "max_group_ece": 0.09}, method="isotonic").on_fail["set"] == {"calibration": "platt"}
    unfair = _post({**good, "dp_ratio": 0.78})
    assert unfair.on_fail["destination"] == "inprocess" and unfair.on_fail["set"] == {"constraint_weight": 0.7}
    thr = _post(good, thresholds={"in_range": False, "spread": 0.3})
    assert set(thr.failed_checks()) == {"thresholds_in_range", "threshold_spread"}
    costly = _post({**good, "accuracy": 0.75})
    assert costly.failure_modes == ["utility_cost"] and costly.on_fail["destination"] == "causal"
    inter = _post({**good, "worst_accuracy_deviation": 0.08})
    assert inter.failure_modes == ["intersectional_disparity"]


def test_thresholds_config_validation():
    assert GateThresholds.from_dict({"f1_min": 0.5}).f1_min == 0.5
    with pytest.raises(PipelineInputError, match=r"gates: 'f1' is invalid: unknown gate threshold; valid: e_value_min"):
        GateThresholds.from_dict({"f1": 0.5})
    with pytest.raises(PipelineInputError, match=r"gates.f1_min: 'high' is invalid: must be a number"):
        GateThresholds.from_dict({"f1_min": "high"})
