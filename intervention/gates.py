"""Validation gates and rollback rules of the playbook, as code.

Each gate takes measured numbers and returns a :class:`GateResult`: every check with
its value, threshold and verdict, and on failure the playbook's rollback — the stage
to return to and the parameter adjustment. Thresholds default to the playbook's and
are configurable (:class:`GateThresholds`). "Accuracy loss" is relative to the
baseline: ``(acc_baseline − acc) / acc_baseline``; "fairness improvement" is relative
too: ``(DP_after − DP_before) / DP_before`` for demographic parity, ``(gap_before −
gap_after) / gap_before`` for the odds/opportunity gaps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import BAD_VALUE, PipelineInputError

__all__ = [
    "GateThresholds",
    "Check",
    "GateResult",
    "target_metric",
    "target_met",
    "fairness_improvement",
    "accuracy_loss",
    "causal_gate",
    "preprocess_gate",
    "inprocess_gate",
    "postprocess_gate",
]


@dataclass(slots=True)
class GateThresholds:
    """Pass criteria (playbook defaults)."""

    e_value_min: float = 1.5
    fairness_improvement_min: float = 0.10
    preprocess_max_accuracy_loss: float = 0.05
    inprocess_max_accuracy_loss: float = 0.08
    final_max_accuracy_loss: float = 0.10
    ks_p_min: float = 0.05
    outlier_rate_tolerance: float = 0.05
    precision_recall_max_drop: float = 0.10
    dp_ratio_min: float = 0.80
    eo_gap_max: float = 0.10
    f1_min: float = 0.70
    ece_overall_max: float = 0.05
    ece_group_max: float = 0.08
    threshold_low: float = 0.3
    threshold_high: float = 0.7
    threshold_max_spread: float = 0.15
    intersectional_max_deviation: float = 0.05
    intersectional_min_outcome_ratio: float = 0.90
    max_iterations: int = 3

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> GateThresholds:
        """Build from a config mapping; unknown keys are errors naming the valid ones."""
        raw = raw or {}
        names = [f.name for f in fields(cls)]
        for k, v in raw.items():
            if k not in names:
                raise PipelineInputError(
                    BAD_VALUE.format(
                        field="gates", value=k, reason=f"unknown gate threshold; valid: {', '.join(names)}"
                    ),
                    field="gates",
                )
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise PipelineInputError(
                    BAD_VALUE.format(field=f"gates.{k}", value=v, reason="must be a number"), field=f"gates.{k}"
                )
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Check:
    name: str
    value: Any
    threshold: Any
    op: str
    passed: bool


@dataclass(slots=True)
class GateResult:
    gate: str
    stage: str
    passed: bool
    checks: list[Check] = field(default_factory=list)
    failure_modes: list[str] = field(default_factory=list)
    on_fail: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]


def _cmp(name: str, value: Any, op: str, threshold: Any) -> Check:
    if value is None:
        return Check(name, None, threshold, op, False)
    ok = {
        ">": value > threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        "<=": value <= threshold,
        "==": value == threshold,
    }[op]
    return Check(name, round(value, 6) if isinstance(value, float) else value, threshold, op, bool(ok))


def target_metric(target: str) -> tuple[str, bool]:
    """(headline key, higher-is-better) of a fairness target.

    >>> target_metric("demographic_parity"), target_metric("equalized_odds")
    (('dp_ratio', True), ('eo_gap', False))
    """
    return {
        "demographic_parity": ("dp_ratio", True),
        "equalized_odds": ("eo_gap", False),
        "equal_opportunity": ("eop_gap", False),
    }[target]


def target_met(m: dict[str, Any], target: str, t: GateThresholds) -> bool:
    """Is the fairness target met? DP ratio ≥ dp_ratio_min, or the gap < eo_gap_max.

    >>> target_met({"dp_ratio": 0.82}, "demographic_parity", GateThresholds())
    True
    >>> target_met({"eo_gap": 0.12}, "equalized_odds", GateThresholds())
    False
    """
    key, higher = target_metric(target)
    v = m.get(key)
    if v is None:
        return False
    return v >= t.dp_ratio_min if higher else v < t.eo_gap_max


def fairness_improvement(before: dict[str, Any], after: dict[str, Any], target: str) -> float | None:
    """Relative improvement of the target metric.

    >>> round(fairness_improvement({"dp_ratio": 0.67}, {"dp_ratio": 0.79}, "demographic_parity"), 4)
    0.1791
    >>> round(fairness_improvement({"eo_gap": 0.2}, {"eo_gap": 0.05}, "equalized_odds"), 4)
    0.75
    """
    key, higher = target_metric(target)
    b, a = before.get(key), after.get(key)
    if b is None or a is None:
        return None
    if higher:
        return None if b == 0 else (a - b) / b
    if b == 0:
        return 0.0 if a == 0 else -1.0
    return (b - a) / b


def accuracy_loss(baseline: dict[str, Any], candidate: dict[str, Any]) -> float | None:
    """Relative accuracy loss from the baseline.

    >>> round(accuracy_loss({"accuracy": 0.86}, {"accuracy": 0.84}), 4)
    0.0233
    """
    b, a = baseline.get("accuracy"), candidate.get("accuracy")
    if not b or a is None:
        return None
    return (b - a) / b


def _rel_drop(baseline: dict[str, Any], candidate: dict[str, Any], key: str) -> float | None:
    b, a = baseline.get(key), candidate.get(key)
    if not b or a is None:
        return None
    return (b - a) / b


def causal_gate(report: dict[str, Any], t: GateThresholds) -> GateResult:
    """Gate 1: DAG approved by experts, E-value of the primary attribute > 1.5, no
    protected attribute among the model's features."""
    sens = report["sensitivity"].get(report["primary_attribute"], {})
    checks = [
        _cmp("dag_expert_approved", bool(report.get("expert_approved")), "==", True),
        _cmp("e_value", sens.get("e_value"), ">", t.e_value_min),
        _cmp("protected_attributes_in_model", len(report.get("protected_in_model_features", [])), "==", 0),
    ]
    passed = all(c.passed for c in checks)
    return GateResult(
        "causal_dag_validity", "causal", passed, checks,
        failure_modes=[] if passed else ["causal_assumptions"],
        on_fail=None if passed else {
            "destination": "escalate",
            "adjustment": "iterate the causal graph with additional expert workshops; "
                          "automated iterations cannot replace expert review",
        },
    )  # fmt: skip


def preprocess_gate(
    baseline: dict[str, Any],
    candidate: dict[str, Any],
    integrity: dict[str, dict[str, Any]],
    *,
    target: str,
    technique: str,
    repair_level: float | None,
    t: GateThresholds,
) -> GateResult:
    """Gate 2: fairness +10 %, accuracy loss ≤ 5 %, precision/recall drop ≤ 10 %, KS p >
    0.05, no new missing values, outlier rate within ±5 points, no new intersectional
    disparity (worst intersectional DP ratio not lower than the baseline's).

    KS and outlier rate are checked on the non-protected features *other than* those
    being repaired (entries marked ``"repaired": True``): moving a repaired feature's
    group distributions is the intervention, not corruption; its change stays in the
    integrity report. New missing values are checked on every feature."""
    numeric = {k: v for k, v in integrity.items() if v["kind"] == "numeric" and not v.get("repaired")}
    min_p = min((v["p_value"] for v in numeric.values()), default=1.0)
    worst_ks = min(numeric, key=lambda k: numeric[k]["p_value"]) if numeric else None
    outlier = max((abs(v["outlier_rate_after"] - v["outlier_rate_before"]) for v in numeric.values()), default=0.0)
    new_missing = sum(max(0, v["new_missing"]) for v in integrity.values())
    b_int, c_int = baseline.get("intersectional_min_dp_ratio"), candidate.get("intersectional_min_dp_ratio")
    checks = [
        _cmp(
            "fairness_improvement",
            fairness_improvement(baseline, candidate, target),
            ">=",
            t.fairness_improvement_min,
        ),
        _cmp("accuracy_loss", accuracy_loss(baseline, candidate), "<=", t.preprocess_max_accuracy_loss),
        _cmp("precision_drop", _rel_drop(baseline, candidate, "precision"), "<=", t.precision_recall_max_drop),
        _cmp("recall_drop", _rel_drop(baseline, candidate, "recall"), "<=", t.precision_recall_max_drop),
        _cmp("ks_min_p_value", min_p, ">", t.ks_p_min),
        _cmp("new_missing_values", new_missing, "==", 0),
        _cmp("outlier_rate_change", outlier, "<=", t.outlier_rate_tolerance),
        _cmp("intersectional_min_dp_ratio_change",
             None if b_int is None or c_int is None else c_int - b_int, ">=", 0.0),
    ]  # fmt: skip
    by = {c.name: c.passed for c in checks}
    modes = []
    if not (by["accuracy_loss"] and by["precision_drop"] and by["recall_drop"]):
        modes.append("utility_cost")
    if not (by["ks_min_p_value"] and by["new_missing_values"] and by["outlier_rate_change"]):
        modes.append("data_integrity")
    if not by["fairness_improvement"]:
        modes.append("fairness_insufficient")
    if not by["intersectional_min_dp_ratio_change"]:
        modes.append("intersectional_disparity")
    passed = not modes
    on_fail = None
    other = "reweighing" if technique == "disparate_impact_remover" else "disparate_impact_remover"
    if "utility_cost" in modes:
        on_fail = {"destination": "causal", "adjustment": "skip pre-processing (it must preserve accuracy within 2 %)",
                   "set": {"preprocess_technique": "none"}}  # fmt: skip
    elif "data_integrity" in modes and technique == "disparate_impact_remover" and (repair_level or 0) > 0.4:
        lvl = round((repair_level or 0) - 0.2, 2)
        on_fail = {"destination": "preprocess", "adjustment": f"reduce repair_level {repair_level} -> {lvl}",
                   "set": {"repair_level": lvl}, "worst_feature": worst_ks}  # fmt: skip
    elif modes:
        on_fail = {"destination": "preprocess", "adjustment": f"switch technique {technique} -> {other}",
                   "set": {"preprocess_technique": other}}  # fmt: skip
    return GateResult("preprocess_validation", "preprocess", passed, checks, modes, on_fail)


def inprocess_gate(
    baseline: dict[str, Any],
    candidate: dict[str, Any],
    convergence: dict[str, Any],
    *,
    target: str,
    technique: str,
    constraint_weight: float,
    t: GateThresholds,
) -> GateResult:
    """Gate 3: fairness constraint satisfied, accuracy loss ≤ 8 %, F1 ≥ 0.70, intersectional
    accuracy deviation ≤ 0.05, training converged (finite, solver converged, loss settled)."""
    key, higher = target_metric(target)
    checks = [
        _cmp(f"target_{key}", candidate.get(key), ">=" if higher else "<", t.dp_ratio_min if higher else t.eo_gap_max),
        _cmp("accuracy_loss", accuracy_loss(baseline, candidate), "<=", t.inprocess_max_accuracy_loss),
        _cmp("f1", candidate.get("f1"), ">=", t.f1_min),
        _cmp("intersectional_worst_accuracy_deviation", candidate.get("worst_accuracy_deviation"), "<=",
             t.intersectional_max_deviation),
        _cmp("converged", bool(convergence.get("converged")), "==", True),
    ]  # fmt: skip
    by = {c.name: c.passed for c in checks}
    modes = []
    if not by["converged"]:
        modes.append("convergence")
    if not (by["accuracy_loss"] and by["f1"]):
        modes.append("utility_cost")
    if not by[f"target_{key}"]:
        modes.append("fairness_insufficient")
    if not by["intersectional_worst_accuracy_deviation"]:
        modes.append("intersectional_disparity")
    passed = not modes
    other = "reductions" if technique == "constrained_lr" else "constrained_lr"
    w = constraint_weight
    on_fail = None
    switch = {"destination": "inprocess", "adjustment": f"switch technique {technique} -> {other}",
              "set": {"inprocess_technique": other}}  # fmt: skip
    if ("utility_cost" in modes and "fairness_insufficient" in modes) or "intersectional_disparity" in modes:
        on_fail = switch
    elif "convergence" in modes or "utility_cost" in modes:
        new = round(max(0.0, w - 0.2), 2)
        on_fail = switch if new == w else {
            "destination": "inprocess", "adjustment": f"reduce constraint_weight {w} -> {new}",
            "set": {"constraint_weight": new}}  # fmt: skip
    elif "fairness_insufficient" in modes:
        new = round(min(1.0, w + 0.2), 2)
        on_fail = switch if new == w else {
            "destination": "inprocess", "adjustment": f"increase constraint_weight {w} -> {new}",
            "set": {"constraint_weight": new}}  # fmt: skip
    return GateResult("inprocess_validation", "inprocess", passed, checks, modes, on_fail)


def postprocess_gate(
    baseline: dict[str, Any],
    candidate: dict[str, Any],
    *,
    thresholds: dict[str, Any] | None,
    target: str,
    calibration_method: str | None,
    constraint_weight: float,
    t: GateThresholds,
) -> GateResult:
    """Gate 4 (final): target met, ECE < 0.05 overall and < 0.08 per group, thresholds in
    [0.3, 0.7] and within 0.15 of each other (when thresholds were optimized),
    intersectional groups within 0.05 of the average accuracy and ≥ 90 % of the best
    group's, accuracy loss ≤ 10 %."""
    key, higher = target_metric(target)
    checks = [
        _cmp(f"target_{key}", candidate.get(key), ">=" if higher else "<", t.dp_ratio_min if higher else t.eo_gap_max),
        _cmp("ece_overall", candidate.get("ece"), "<", t.ece_overall_max),
        _cmp("ece_max_group", candidate.get("max_group_ece"), "<", t.ece_group_max),
        _cmp("intersectional_worst_accuracy_deviation", candidate.get("worst_accuracy_deviation"), "<=",
             t.intersectional_max_deviation),
        _cmp("intersectional_worst_outcome_ratio", candidate.get("worst_outcome_ratio"), ">=",
             t.intersectional_min_outcome_ratio),
        _cmp("accuracy_loss", accuracy_loss(baseline, candidate), "<=", t.final_max_accuracy_loss),
    ]  # fmt: skip
    if thresholds is not None:
        checks.append(_cmp("thresholds_in_range", bool(thresholds.get("in_range")), "==", True))
        checks.append(_cmp("threshold_spread", thresholds.get("spread"), "<=", t.threshold_max_spread))
    by = {c.name: c.passed for c in checks}
    modes = []
    if not by["accuracy_loss"]:
        modes.append("utility_cost")
    if not (by[f"target_{key}"] and by.get("thresholds_in_range", True) and by.get("threshold_spread", True)):
        modes.append("fairness_insufficient")
    if not (by["intersectional_worst_accuracy_deviation"] and by["intersectional_worst_outcome_ratio"]):
        modes.append("intersectional_disparity")
    if not (by["ece_overall"] and by["ece_max_group"]):
        modes.append("calibration")
    passed = not modes
    on_fail = None
    if "utility_cost" in modes:
        on_fail = {"destination": "causal", "adjustment": "revise the intervention strategy: skip pre-processing "
                   "and use the reductions approach", "set": {"preprocess_technique": "none",
                                                               "inprocess_technique": "reductions"}}  # fmt: skip
    elif "fairness_insufficient" in modes or "intersectional_disparity" in modes:
        new = round(min(1.0, constraint_weight + 0.2), 2)
        on_fail = {"destination": "inprocess", "adjustment": f"increase constraint_weight {constraint_weight} -> {new}",
                   "set": {"constraint_weight": new}}  # fmt: skip
        if new == constraint_weight:
            on_fail = {"destination": "inprocess", "adjustment": "switch in-processing technique",
                       "set": {"inprocess_technique": "switch"}}  # fmt: skip
    elif "calibration" in modes:
        nxt = "isotonic" if calibration_method != "isotonic" else "platt"
        on_fail = {"destination": "postprocess", "adjustment": f"switch calibration {calibration_method} -> {nxt}",
                   "set": {"calibration": nxt}}  # fmt: skip
    return GateResult("final_validation", "postprocess", passed, checks, modes, on_fail)
