"""Each pipeline stage as a standalone library call (what the CLI subcommands run).

Every call loads and splits the data like ``run_pipeline`` does, trains the
fairness-unaware baseline for the before/after comparison, runs one stage, writes its
artifacts and JSON report into ``cfg.output``, and returns the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from . import plots
from .config import PipelineConfig
from .errors import UNREADABLE_FILE, PipelineInputError
from .evaluation import intersectional_report
from .pipeline import (
    Prepared,
    _evaluate,
    headline,
    prepare_context,
    stage_baseline,
    stage_causal,
    stage_inprocess,
    stage_postprocess,
    stage_preprocess,
    write_json,
)
from .preprocess import DisparateImpactRemover, reweighing_weights

__all__ = ["run_causal", "run_preprocess", "run_inprocess", "run_postprocess", "run_evaluate", "load_model"]


def load_model(path: str | Path) -> Any:
    """Load a model written by the pipeline (joblib)."""
    try:
        return joblib.load(path)
    except (OSError, EOFError, ValueError, ModuleNotFoundError, AttributeError) as exc:
        raise PipelineInputError(UNREADABLE_FILE.format(field="--model", value=str(path), reason=exc),
                                 field="--model") from exc  # fmt: skip


def run_causal(cfg: PipelineConfig) -> dict[str, Any]:
    """Causal analysis: DAG (.dot + .png), roles, adjustment sets, sensitivity, gate 1."""
    with threadpool_limits(limits=1, user_api="blas"):
        ctx = prepare_context(cfg)
        report, _ = stage_causal(ctx)
    return report


def run_preprocess(cfg: PipelineConfig) -> dict[str, Any]:
    """Pre-processing with before/after fairness and accuracy, KS integrity and gate 2.

    If ``cfg.output`` ends in ``.csv``, the transformed data set is written there (a
    ``weight`` column for reweighing) and the report beside it.
    """
    out_csv = cfg.output.endswith((".csv", ".csv.gz"))
    target = Path(cfg.output)
    if out_csv:
        cfg.output = str(target.parent / (target.name.split(".csv")[0] + "_report"))
    with threadpool_limits(limits=1, user_api="blas"):
        ctx = prepare_context(cfg)
        baseline = stage_baseline(ctx)
        technique = cfg.preprocess_technique
        repair = cfg.repair_features or [f for f in cfg.features if pd.api.types.is_numeric_dtype(ctx.df[f])]
        if technique == "auto":
            technique = "disparate_impact_remover" if repair else "reweighing"
        params = {"preprocess_technique": technique, "repair_level": cfg.repair_level}
        _, cand, gate = stage_preprocess(ctx, params, baseline, 1, repair)
    report = {"technique": technique, "before": baseline.metrics, "after": cand.metrics,
              "integrity": cand.details["integrity"], "gate": gate.to_dict(), "params": cand.params}  # fmt: skip
    if out_csv:
        df = ctx.df
        if technique == "disparate_impact_remover":
            full = DisparateImpactRemover([cfg.primary], repair, repair_level=cfg.repair_level,
                                          random_state=cfg.seed).fit_transform(df)  # fmt: skip
        else:
            full = df.assign(weight=reweighing_weights(df, protected=[cfg.primary], outcome=cfg.outcome))
        target.parent.mkdir(parents=True, exist_ok=True)
        full.to_csv(target, index=False)
        report["output_data"] = str(target)
    write_json(ctx.out / "preprocess_report.json", report)
    return report


def run_inprocess(cfg: PipelineConfig) -> dict[str, Any]:
    """Constrained LR or reductions on the (possibly pre-processed) data, with gate 3.

    A ``weight`` column in the data (from ``preprocess`` reweighing) is used as sample
    weights for the constrained LR.
    """
    weight = None
    with threadpool_limits(limits=1, user_api="blas"):
        if "weight" not in cfg.exclude:
            cfg.exclude = [*cfg.exclude, "weight"]
        ctx = prepare_context(cfg)
        if "weight" in ctx.df.columns:
            weight = ctx.df["weight"].to_numpy(dtype=float)[ctx.split.train]
        baseline = stage_baseline(ctx)
        prepared = Prepared("none", ctx.part("train"), weight, None, {}) if weight is not None else None
        params = {"inprocess_technique": cfg.inprocess_technique, "constraint_weight": cfg.constraint_weight}
        cand, gate = stage_inprocess(ctx, params, baseline, prepared, [], 1)
    joblib.dump(cand.model, ctx.out / "model.joblib")
    report = {"model": str(ctx.out / "model.joblib"), "baseline": baseline.metrics, "after": cand.metrics,
              "convergence": cand.details["convergence"], "gate": gate.to_dict(), "params": cand.params}  # fmt: skip
    write_json(ctx.out / "inprocess_report.json", report)
    return report


def run_postprocess(cfg: PipelineConfig, model_path: str | Path, *, thresholds: bool = True) -> dict[str, Any]:
    """ECE + reliability diagrams, group calibration, threshold optimization, gate 4."""
    from .pipeline import Candidate

    model = load_model(model_path)
    with threadpool_limits(limits=1, user_api="blas"):
        ctx = prepare_context(cfg)
        baseline = stage_baseline(ctx)
        metrics, _, _ = _evaluate(ctx, model)
        source = Candidate("input_model", "inprocess", 0, {"path": str(model_path)}, model, metrics)
        params = {"calibration": cfg.calibration, "constraint_weight": cfg.constraint_weight}
        cand, gate = stage_postprocess(ctx, params, baseline, source, 1, calibrate=True, thresholds=thresholds)
    joblib.dump(cand.model, ctx.out / "model_postprocessed.joblib")
    report = {"input": metrics, "after": cand.metrics, "calibration": cand.details["calibration"],
              "thresholds": cand.details["thresholds"], "gate": gate.to_dict(),
              "model": str(ctx.out / "model_postprocessed.joblib")}  # fmt: skip
    write_json(ctx.out / "postprocess_report.json", report)
    return report


def run_evaluate(cfg: PipelineConfig, model_paths: list[str]) -> dict[str, Any]:
    """Intersectional report of each model and the Pareto frontier of all of them."""
    from .evaluation import pareto_frontier

    with threadpool_limits(limits=1, user_api="blas"):
        ctx = prepare_context(cfg)
        test = ctx.part("test")
        points, reports = [], {}
        for p in model_paths:
            model = load_model(p)
            pred = np.asarray(model.predict(test)).astype(int)
            prob = model.predict_proba(test)[:, 1]
            m = headline(ctx, ctx.y_part("test"), pred, prob, test)
            name = Path(p).stem
            reports[name] = {"metrics": m, "intersectional": intersectional_report(
                ctx.y_part("test"), pred, test[cfg.protected], min_group_size=cfg.min_group_size)}  # fmt: skip
            points.append({"name": name, "accuracy": m["accuracy"], "dp_ratio": m["dp_ratio"],
                           "eo_gap": m["eo_gap"], "f1": m["f1"]})  # fmt: skip
    y_key = "dp_ratio" if cfg.target_fairness == "demographic_parity" else "eo_gap"
    front = pareto_frontier(points, y=y_key, maximize=(True, y_key == "dp_ratio"))
    plots.plot_pareto(points, front, ctx.out / "pareto_frontier.png", y=y_key)
    report = {"models": reports, "pareto": {"points": points, "frontier": front, "fairness_metric": y_key}}
    write_json(ctx.out / "intersectional_fairness_report.json", report)
    return report
