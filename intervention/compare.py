"""The reference a reviewer checks the pipeline against: fairlearn's ThresholdOptimizer alone.

``threshold_optimizer_alone`` fits fairlearn's ``ThresholdOptimizer`` directly (not
through the pipeline's post-processing stage) on a finished run's baseline model, on
the same split, and measures it like every candidate. ``recommendation_holds`` states
the claim the benchmark and the tests assert: whenever that reference meets the
playbook's fairness target within the final accuracy limit, so does the pipeline's
recommendation (the passing candidate, or an escalation's best trade-off), with equal
or better accuracy — unless the reference itself fails another check of the final gate
(thresholds outside [0.3, 0.7], calibration, intersectional) and the pipeline therefore
recommends a different, validated candidate.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer

from .config import PipelineConfig
from .gates import accuracy_loss, postprocess_gate, target_met
from .pipeline import headline, prepare_context
from .postprocess import _TO_CONSTRAINTS, effective_thresholds, threshold_sanity

__all__ = ["threshold_optimizer_alone", "meets_target_within_limit", "recommendation_holds"]


def meets_target_within_limit(baseline: dict[str, Any], m: dict[str, Any], cfg: PipelineConfig) -> bool:
    """The fairness target met with an accuracy loss within ``final_max_accuracy_loss``."""
    loss = accuracy_loss(baseline, m)
    return (
        target_met(m, cfg.target_fairness, cfg.gates) and loss is not None and loss <= cfg.gates.final_max_accuracy_loss
    )


def threshold_optimizer_alone(
    cfg: PipelineConfig, run_dir: str | Path, *, df: pd.DataFrame | None = None
) -> dict[str, Any]:
    """fairlearn's ThresholdOptimizer on the run's baseline model: fitted on the validation
    split, measured on the test split (decisions drawn with ``cfg.seed``)."""
    run = Path(run_dir)
    ctx = prepare_context(dataclasses.replace(cfg, output=str(run / "reference")), df)
    base_model = joblib.load(run / "models" / "baseline.joblib")
    val, test = ctx.part("validation"), ctx.part("test")
    to = ThresholdOptimizer(estimator=base_model, constraints=_TO_CONSTRAINTS[cfg.threshold_constraint],
                            objective="accuracy_score", prefit=True, predict_method="predict_proba")  # fmt: skip
    to.fit(val, ctx.y_part("validation"), sensitive_features=val[cfg.primary].to_numpy())
    pred = np.asarray(to.predict(test, sensitive_features=test[cfg.primary].to_numpy(), random_state=cfg.seed))
    prob = base_model.predict_proba(test)[:, 1]
    yt = ctx.y_part("test")
    base = headline(ctx, yt, np.asarray(base_model.predict(test)).astype(int), prob, test)
    m = headline(ctx, yt, pred.astype(int), prob, test)
    sanity = threshold_sanity(effective_thresholds(to), low=cfg.gates.threshold_low, high=cfg.gates.threshold_high,
                              max_spread=cfg.gates.threshold_max_spread)  # fmt: skip
    gate = postprocess_gate(base, m, thresholds=sanity, target=cfg.target_fairness, calibration_method=None,
                            constraint_weight=cfg.constraint_weight, t=cfg.gates)  # fmt: skip
    return {"metrics": m, "baseline_metrics": base, "thresholds": sanity,
            "meets_target_within_accuracy_limit": meets_target_within_limit(base, m, cfg),
            "final_gate_passed": gate.passed, "failed_checks": gate.failed_checks()}  # fmt: skip


def recommendation_holds(record: dict[str, Any], reference: dict[str, Any], cfg: PipelineConfig) -> dict[str, Any]:
    """Check the claim against one run: returns the verdict and the numbers behind it."""
    base = record["baseline"]["metrics"]
    rec = record["final"]["metrics"]
    ref = reference["metrics"]
    rec_ok = meets_target_within_limit(base, rec, cfg)
    at_least = rec["accuracy"] >= ref["accuracy"] - 1e-12
    excused = not reference["final_gate_passed"] and record["result"] != "escalated"
    holds = not reference["meets_target_within_accuracy_limit"] or (rec_ok and (at_least or excused))
    return {"holds": holds, "reference_meets": reference["meets_target_within_accuracy_limit"],
            "recommendation_meets": rec_ok, "accuracy_recommendation": rec["accuracy"],
            "accuracy_reference": ref["accuracy"], "equal_or_better_accuracy": at_least,
            "reference_fails_other_final_checks": reference["failed_checks"]}  # fmt: skip
