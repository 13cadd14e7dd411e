"""The playbook's intervention pipeline: stages, gates, decision points, rollback, escalation.

``run_pipeline(config)`` runs causal analysis → pre-processing → in-processing →
post-processing → evaluation, checks each validation gate, follows the playbook's
decision points, and on a failed gate rolls back to the named stage with the named
parameter adjustment — at most ``gates.max_iterations`` (3) iterations, then it
escalates. Every decision and its numbers land in ``run.json``; models (joblib),
reports (JSON), plots (PNG) and an HTML summary land in the run folder.

All metrics are measured on the held-out *test* split; calibrators and thresholds are
fitted on the *validation* split; models on the *train* split.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from . import plots
from .causal import causal_analysis, load_expert_knowledge, write_dot
from .config import PipelineConfig
from .data import Split, binary_outcome, load_adult, load_table, make_encoder, split_data
from .errors import PipelineInputError, check_columns
from .evaluation import intersectional_report, pareto_frontier
from .gates import (
    GateResult,
    accuracy_loss,
    causal_gate,
    inprocess_gate,
    postprocess_gate,
    preprocess_gate,
    target_met,
    target_metric,
)
from .inprocess import FairConstrainedLogisticRegression, convergence_report, make_reductions
from .metrics import ece_by_group, expected_calibration_error, fairness_summary
from .models import (
    CalibratedModel,
    RepairedModel,
    TabularModel,
    ThresholdedModel,
    fit_quietly,
    make_base_estimator,
)
from .postprocess import GroupCalibrator, effective_thresholds, make_threshold_optimizer, threshold_sanity
from .preprocess import DisparateImpactRemover, ks_integrity, reweighing_weights

__all__ = ["PipelineContext", "Candidate", "run_pipeline", "prepare_context", "headline", "write_json"]

log = logging.getLogger("fairwatch.intervention")

STAGES = ("causal", "preprocess", "inprocess", "postprocess", "evaluation")


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (numpy scalars and paths converted)."""

    def default(o: Any) -> Any:
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return None if not np.isfinite(o) else float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, set):
            return sorted(o)
        raise TypeError(f"not JSON serializable: {type(o).__name__}")

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=default, allow_nan=False) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- resources


def _read_hwm_kib() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class StageTimer:
    """Wall time and peak resident memory (Linux VmHWM, reset per stage) of each stage."""

    records: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        reset = _reset_hwm()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            hwm = _read_hwm_kib()
            rec = self.records.setdefault(name, {"wall_seconds": 0.0, "peak_rss_mib": None, "runs": 0})
            rec["wall_seconds"] = round(float(rec["wall_seconds"] or 0) + time.perf_counter() - t0, 3)
            rec["runs"] = int(rec["runs"] or 0) + 1
            if hwm is not None:
                peak = round(hwm / 1024, 1)
                rec["peak_rss_mib"] = (
                    peak if not reset or rec["peak_rss_mib"] is None else max(peak, rec["peak_rss_mib"])
                )


# ---------------------------------------------------------------------------- context


@dataclass
class Candidate:
    """One evaluated model: its stage, parameters, test metrics and artifact path."""

    name: str
    stage: str
    iteration: int
    params: dict[str, Any]
    model: Any
    metrics: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def gates(self) -> list[dict[str, Any]]:
        """The gate results along this candidate's path (its inputs' gates, its own, the final)."""
        return self.details.setdefault("gates", [])

    @property
    def passes_every_gate(self) -> bool:
        return bool(self.gates) and all(g["passed"] for g in self.gates)

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "stage": self.stage, "iteration": self.iteration, "params": self.params,
                "metrics": self.metrics, "model_path": self.path, "gates": self.gates,
                "passes_every_gate": self.passes_every_gate,
                "failed_checks": sorted({f"{g['gate']}.{c['name']}" for g in self.gates for c in g["checks"]
                                         if not c["passed"]})}  # fmt: skip


@dataclass
class PipelineContext:
    cfg: PipelineConfig
    df: pd.DataFrame
    y: np.ndarray
    split: Split
    features: list[str]
    out: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    timer: StageTimer = field(default_factory=StageTimer)

    def part(self, name: str) -> pd.DataFrame:
        return self.df.iloc[getattr(self.split, name)].reset_index(drop=True)

    def y_part(self, name: str) -> np.ndarray:
        return self.y[getattr(self.split, name)]

    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        rec = {"seq": len(self.events) + 1, "kind": kind, **data}
        self.events.append(rec)
        log.info("%s %s", kind, {k: v for k, v in data.items() if k in ("stage", "name", "outcome", "passed")})
        return rec


def _load_frame(cfg: PipelineConfig) -> pd.DataFrame:
    if not cfg.data:
        raise PipelineInputError("--data: a data file is required", field="--data")
    if all(Path(p).suffix in (".data", ".test") for p in cfg.data):
        return load_adult(*cfg.data)
    frames = [load_table(p) for p in cfg.data]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def prepare_context(cfg: PipelineConfig, df: pd.DataFrame | None = None) -> PipelineContext:
    """Load and validate the data, choose model features, split, create the run folder."""
    df = _load_frame(cfg) if df is None else df.copy()
    check_columns("--protected", cfg.protected, df.columns)
    check_columns("--outcome", [cfg.outcome], df.columns)
    check_columns("--features", cfg.features, df.columns)
    check_columns("--mediators", cfg.mediators, df.columns)
    check_columns("repair_features", cfg.repair_features, df.columns)
    if cfg.sample is not None and int(cfg.sample) < len(df):
        df = df.sample(n=int(cfg.sample), random_state=cfg.seed).reset_index(drop=True)
    for a in cfg.protected:
        df[a] = df[a].astype(object).where(df[a].notna(), "__missing__").astype(str)
    y = binary_outcome(df[cfg.outcome])
    skip = set(cfg.protected) | {cfg.outcome} | set(cfg.exclude)
    features = cfg.features or [c for c in df.columns if c not in skip]
    bad = sorted(set(features) & set(cfg.protected))
    if bad:
        raise PipelineInputError(
            f"--features: {bad[0]!r} is a protected attribute; protected attributes never enter the model",
            field="--features",
        )
    split = split_data(df, outcome=cfg.outcome, protected=cfg.protected, fractions=tuple(cfg.split),
                       random_state=cfg.seed)  # fmt: skip
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    return PipelineContext(cfg=cfg, df=df, y=y, split=split, features=list(features), out=out)


def headline(ctx: PipelineContext, y_true: np.ndarray, y_pred: np.ndarray, y_prob: np.ndarray | None,
             sens: pd.DataFrame) -> dict[str, Any]:  # fmt: skip
    """Flat metrics of one candidate: utility, the primary attribute's fairness, ECE,
    and the intersectional summary over all protected attributes."""
    cfg = ctx.cfg
    s = fairness_summary(y_true, y_pred, sens[cfg.protected], y_prob=y_prob, min_group_size=cfg.min_group_size)
    prim = s["attributes"][cfg.primary]
    inter = intersectional_report(y_true, y_pred, sens[cfg.protected], min_group_size=cfg.min_group_size)
    dis = [g["disparate_impact"] for k, g in prim["groups"].items()
           if k not in prim["insufficient_groups"] and g["disparate_impact"] is not None]  # fmt: skip
    return {
        "accuracy": s["accuracy"], "precision": s["precision"], "recall": s["recall"], "f1": s["f1"],
        "selection_rate": s["selection_rate"], "ece": s["ece"],
        "dp_ratio": prim["dp_ratio"], "dp_difference": prim["dp_difference"], "eo_gap": prim["eo_gap"],
        "eop_gap": prim["eop_gap"], "max_group_ece": prim.get("max_group_ece"),
        "min_disparate_impact": min(dis) if dis else None,
        "selection_rate_by_group": {k: g["selection_rate"] for k, g in prim["groups"].items()},
        "intersectional_min_dp_ratio": inter["min_dp_ratio"],
        "intersectional_max_eo_gap": inter["max_eo_gap"],
        "worst_accuracy_deviation": inter["worst_accuracy_deviation"],
        "worst_outcome_ratio": inter["worst_outcome_ratio"],
        "worst_accuracy_group": inter["worst_accuracy_group"],
    }  # fmt: skip


def _evaluate(ctx: PipelineContext, model: Any) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    test = ctx.part("test")
    prob = model.predict_proba(test)[:, 1]
    pred = np.asarray(model.predict(test)).astype(int)
    return headline(ctx, ctx.y_part("test"), pred, prob, test), pred, prob


def _add_candidate(ctx: PipelineContext, cand: Candidate) -> Candidate:
    path = ctx.out / "models" / f"{cand.name}.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(cand.model, path)
    cand.path = str(path.relative_to(ctx.out))
    ctx.candidates.append(cand)
    ctx.event("candidate", stage=cand.stage, name=cand.name, params=cand.params, metrics=cand.metrics)
    return cand


def _fit_tabular(
    ctx: PipelineContext,
    train: pd.DataFrame,
    features: list[str],
    estimator: Any,
    name: str,
    *,
    sample_weight: np.ndarray | None = None,
    **fit_kw: Any,
) -> tuple[TabularModel, list[str]]:
    enc = make_encoder(train, features).fit(train[features])
    x = enc.transform(train[features])
    kw = dict(fit_kw)
    if sample_weight is not None:
        kw["sample_weight"] = sample_weight
    warns = fit_quietly(estimator.fit, x, ctx.y_part("train"), **kw)
    return TabularModel(enc, estimator, features, name=name, random_state=ctx.cfg.seed), warns


# ---------------------------------------------------------------------------- stages


def stage_baseline(ctx: PipelineContext) -> Candidate:
    """The fairness-unaware reference: the base estimator on all non-protected features."""
    cfg = ctx.cfg
    est = make_base_estimator(cfg.base_estimator, random_state=cfg.seed)
    model, _ = _fit_tabular(ctx, ctx.part("train"), ctx.features, est, "baseline")
    metrics, _, _ = _evaluate(ctx, model)
    return _add_candidate(ctx, Candidate("baseline", "baseline", 0, {"base_estimator": cfg.base_estimator},
                                         model, metrics))  # fmt: skip


def stage_causal(ctx: PipelineContext) -> tuple[dict[str, Any], GateResult]:
    cfg = ctx.cfg
    knowledge = load_expert_knowledge(cfg.expert_knowledge) if cfg.expert_knowledge is not None else None
    train = ctx.part("train")
    report, g, roles = causal_analysis(
        train, protected=cfg.protected, outcome=cfg.outcome, outcome_values=ctx.y_part("train"),
        features=ctx.features, knowledge=knowledge, mediators=cfg.mediators, primary=cfg.primary,
        min_group_size=cfg.min_group_size,
    )  # fmt: skip
    d = ctx.out / "causal"
    d.mkdir(parents=True, exist_ok=True)
    write_dot(g, roles, d / "causal_dag.dot")
    plots.plot_dag(g, roles, d / "causal_dag.png")
    gate = causal_gate(report, cfg.gates)
    report["gate"] = gate.to_dict()
    write_json(d / "causal_report.json", report)
    ctx.event("gate", **gate.to_dict())
    return report, gate


@dataclass
class Prepared:
    """What pre-processing hands to in-processing."""

    technique: str
    train: pd.DataFrame
    weights: np.ndarray | None
    remover: DisparateImpactRemover | None
    params: dict[str, Any]


def stage_preprocess(ctx: PipelineContext, params: dict[str, Any], baseline: Candidate, iteration: int,
                     repair_features: list[str]) -> tuple[Prepared, Candidate, GateResult]:  # fmt: skip
    cfg = ctx.cfg
    train = ctx.part("train")
    technique = params["preprocess_technique"]
    est = make_base_estimator(cfg.base_estimator, random_state=cfg.seed)
    d = ctx.out / "preprocess"
    d.mkdir(parents=True, exist_ok=True)
    if technique == "disparate_impact_remover":
        remover = DisparateImpactRemover([cfg.primary], repair_features, repair_level=params["repair_level"],
                                         random_state=cfg.seed)  # fmt: skip
        new_train = remover.fit_transform(train)
        inner, _ = _fit_tabular(ctx, new_train, ctx.features, est, "di_inner")
        model: Any = RepairedModel(remover, inner)
        weights = None
        # Playbook: KS integrity concerns the non-protected features *other than those being
        # repaired*; the repaired features are meant to change, so their change is reported.
        kept = [f for f in ctx.features if f not in repair_features]
        integrity = ks_integrity(train, new_train, kept)
        repaired = ks_integrity(train, new_train, repair_features)
        name = f"di_remover_{params['repair_level']:.2f}"
        p = {"technique": technique, "repair_level": params["repair_level"], "features": repair_features,
             "repaired_feature_change": repaired}  # fmt: skip
        new_train.to_csv(d / f"train_{name}.csv.gz", index=False)
    else:
        weights = reweighing_weights(train, protected=[cfg.primary], outcome=cfg.outcome)
        model, _ = _fit_tabular(ctx, train, ctx.features, est, "reweighing", sample_weight=weights)
        remover, new_train = None, train
        integrity = ks_integrity(train, train, ctx.features, weights=weights)
        name = "reweighing"
        p = {"technique": technique, "weights": _weight_table(train, weights, cfg.primary, cfg.outcome)}
        np.save(d / "reweighing_weights.npy", weights)
    metrics, _, _ = _evaluate(ctx, model)
    cand = _add_candidate(ctx, Candidate(f"{name}_it{iteration}", "preprocess", iteration, p, model, metrics,
                                         {"integrity": integrity}))  # fmt: skip
    gate = preprocess_gate(baseline.metrics, metrics, integrity, target=cfg.target_fairness, technique=technique,
                           repair_level=params.get("repair_level"), t=cfg.gates)  # fmt: skip
    write_json(d / f"preprocess_report_it{iteration}.json", {
        "technique": technique, "params": p, "before": baseline.metrics, "after": metrics,
        "fairness_change": {"dp_ratio": [baseline.metrics["dp_ratio"], metrics["dp_ratio"]],
                            "min_disparate_impact": [baseline.metrics["min_disparate_impact"],
                                                     metrics["min_disparate_impact"]]},
        "accuracy_change": [baseline.metrics["accuracy"], metrics["accuracy"]],
        "integrity": integrity, "repaired_feature_change": p.get("repaired_feature_change"),
        "gate": gate.to_dict()})  # fmt: skip
    ctx.event("gate", iteration=iteration, **gate.to_dict())
    return Prepared(technique, new_train, weights, remover, p), cand, gate


def _weight_table(train: pd.DataFrame, w: np.ndarray, attr: str, outcome: str) -> dict[str, float]:
    key = train[attr].astype(str) + "|" + train[outcome].astype(str)
    return {k: round(float(v), 6) for k, v in pd.Series(w).groupby(key.to_numpy()).first().items()}


def stage_inprocess(ctx: PipelineContext, params: dict[str, Any], baseline: Candidate, prepared: Prepared | None,
                    proxies: list[str], iteration: int) -> tuple[Candidate, GateResult]:  # fmt: skip
    cfg = ctx.cfg
    train = prepared.train if prepared is not None else ctx.part("train")
    weights = prepared.weights if prepared is not None else None
    features = [f for f in ctx.features if f not in proxies] or ctx.features
    technique = params["inprocess_technique"]
    sens_train = train[cfg.primary].to_numpy()
    if technique == "constrained_lr":
        est: Any = FairConstrainedLogisticRegression(constraint=cfg.fairness_constraint,
                                                     constraint_weight=params["constraint_weight"])  # fmt: skip
        model, warns = _fit_tabular(ctx, train, features, est, "constrained_lr", sample_weight=weights,
                                    sensitive_features=sens_train)  # fmt: skip
        name = f"constrained_lr_w{params['constraint_weight']:.2f}_it{iteration}"
        p = {"technique": technique, "constraint": cfg.fairness_constraint,
             "constraint_weight": params["constraint_weight"], "features": features}  # fmt: skip
    else:
        est = make_reductions(cfg.base_estimator, cfg.fairness_constraint, eps=cfg.reductions_eps,
                              max_iter=cfg.reductions_max_iter, random_state=cfg.seed)  # fmt: skip
        model, warns = _fit_tabular(ctx, train, features, est, "reductions", sensitive_features=sens_train)
        name = f"reductions_{cfg.base_estimator}_it{iteration}"
        p = {"technique": technique, "constraint": cfg.fairness_constraint, "base_estimator": cfg.base_estimator,
             "eps": cfg.reductions_eps, "features": features}  # fmt: skip
    full: Any = model
    if prepared is not None and prepared.remover is not None:
        full = RepairedModel(prepared.remover, model)
    metrics, _, prob = _evaluate(ctx, full)
    conv = convergence_report(model.estimator, prob, warns)
    cand = _add_candidate(ctx, Candidate(name, "inprocess", iteration, p, full, metrics, {"convergence": conv}))
    gate = inprocess_gate(baseline.metrics, metrics, conv, target=cfg.target_fairness, technique=technique,
                          constraint_weight=params["constraint_weight"], t=cfg.gates)  # fmt: skip
    write_json(ctx.out / "inprocess" / f"inprocess_report_it{iteration}.json", {
        "technique": technique, "params": p, "excluded_proxies": sorted(set(ctx.features) - set(features)),
        "baseline": baseline.metrics, "after": metrics, "convergence": conv, "gate": gate.to_dict()})  # fmt: skip
    ctx.event("gate", iteration=iteration, **gate.to_dict())
    return cand, gate


def stage_postprocess(
    ctx: PipelineContext,
    params: dict[str, Any],
    baseline: Candidate,
    source: Candidate,
    iteration: int,
    *,
    calibrate: bool,
    thresholds: bool,
) -> tuple[Candidate, GateResult]:
    cfg = ctx.cfg
    d = ctx.out / "postprocess"
    d.mkdir(parents=True, exist_ok=True)
    val, test = ctx.part("validation"), ctx.part("test")
    yv, yt = ctx.y_part("validation"), ctx.y_part("test")
    model: Any = source.model
    p_before = model.predict_proba(test)[:, 1]
    calib = {
        "method": None,
        "ece_before": round(expected_calibration_error(yt, p_before) or 0.0, 6),
        "ece_by_group_before": ece_by_group(yt, p_before, sensitive_features=test[cfg.primary].to_numpy()),
    }
    curves = {g: (yt[test[cfg.primary].to_numpy() == g], p_before[test[cfg.primary].to_numpy() == g])
              for g in sorted(test[cfg.primary].unique())}  # fmt: skip
    plots.plot_reliability(curves, d / f"reliability_before_it{iteration}.png",
                           title=f"Reliability before calibration ({source.name})")  # fmt: skip
    steps = []
    if calibrate:
        cal = GroupCalibrator(params["calibration"]).fit(model.predict_proba(val)[:, 1], yv,
                                                         sensitive_features=val[cfg.primary].to_numpy())  # fmt: skip
        model = CalibratedModel(model, cal, cfg.primary)
        p_after = model.predict_proba(test)[:, 1]
        calib.update(
            method=params["calibration"],
            ece_after=round(expected_calibration_error(yt, p_after) or 0.0, 6),
            ece_by_group_after=ece_by_group(yt, p_after, sensitive_features=test[cfg.primary].to_numpy()),
        )
        curves = {g: (yt[test[cfg.primary].to_numpy() == g], p_after[test[cfg.primary].to_numpy() == g])
                  for g in sorted(test[cfg.primary].unique())}  # fmt: skip
        plots.plot_reliability(curves, d / f"reliability_after_it{iteration}.png",
                               title=f"Reliability after group {params['calibration']} calibration")  # fmt: skip
        steps.append(f"group_{params['calibration']}")
    thr_report = None
    sanity = None
    if calibrate and not thresholds:
        # Group calibration can undo a fairness gain (Pleiss et al. 2017): re-check the target.
        interim, _, _ = _evaluate(ctx, model)
        thresholds = not target_met(interim, cfg.target_fairness, cfg.gates)
        calib["target_met_after_calibration"] = not thresholds
    if thresholds:
        to = make_threshold_optimizer(model, cfg.threshold_constraint)
        to.fit(val, yv, sensitive_features=val[cfg.primary].to_numpy())
        model = ThresholdedModel(to, cfg.primary, random_state=cfg.seed)
        thr = effective_thresholds(to)
        sanity = threshold_sanity(thr, low=cfg.gates.threshold_low, high=cfg.gates.threshold_high,
                                  max_spread=cfg.gates.threshold_max_spread)  # fmt: skip
        thr_report = {"constraint": cfg.threshold_constraint, "thresholds": thr, "sanity": sanity}
        steps.append(f"thresholds_{cfg.threshold_constraint}")
    metrics, _, _ = _evaluate(ctx, model)
    name = "+".join([source.name.rsplit("_it", 1)[0], *steps]) + f"_it{iteration}"
    cand = _add_candidate(ctx, Candidate(name, "postprocess", iteration,
                                         {"source": source.name, "steps": steps, "calibration": calib["method"]},
                                         model, metrics, {"calibration": calib, "thresholds": thr_report}))  # fmt: skip
    gate = postprocess_gate(baseline.metrics, metrics, thresholds=sanity, target=cfg.target_fairness,
                            calibration_method=calib["method"], constraint_weight=params["constraint_weight"],
                            t=cfg.gates)  # fmt: skip
    write_json(d / f"calibration_report_it{iteration}.json", calib)
    if thr_report is not None:
        write_json(d / f"threshold_report_it{iteration}.json", thr_report)
    ctx.event("gate", iteration=iteration, **gate.to_dict())
    return cand, gate


def assess_calibration(ctx: PipelineContext, cand: Candidate, iteration: int) -> dict[str, Any]:
    """ECE overall and per group + reliability diagram of a model (post-processing step 1)."""
    cfg = ctx.cfg
    d = ctx.out / "postprocess"
    test, yt = ctx.part("test"), ctx.y_part("test")
    p = cand.model.predict_proba(test)[:, 1]
    g = test[cfg.primary].to_numpy()
    rep = {"model": cand.name, "method": None, "ece_before": expected_calibration_error(yt, p),
           "ece_by_group_before": ece_by_group(yt, p, sensitive_features=g)}  # fmt: skip
    plots.plot_reliability({k: (yt[g == k], p[g == k]) for k in sorted(set(g.tolist()))},
                           d / f"reliability_before_it{iteration}.png", title=f"Reliability ({cand.name})")  # fmt: skip
    write_json(d / f"calibration_report_it{iteration}.json", rep)
    return rep


def stage_evaluation(ctx: PipelineContext, final: Candidate) -> dict[str, Any]:
    cfg = ctx.cfg
    d = ctx.out / "evaluation"
    test = ctx.part("test")
    pred = np.asarray(final.model.predict(test)).astype(int)
    inter = intersectional_report(ctx.y_part("test"), pred, test[cfg.protected], min_group_size=cfg.min_group_size)
    inter["model"] = final.name
    write_json(d / "intersectional_report.json", inter)
    y_key = "dp_ratio" if cfg.target_fairness == "demographic_parity" else (
        "eo_gap" if cfg.target_fairness == "equalized_odds" else "eop_gap")  # fmt: skip
    points = [{"name": c.name, "stage": c.stage, "accuracy": c.metrics["accuracy"], "f1": c.metrics["f1"],
               "dp_ratio": c.metrics["dp_ratio"], "eo_gap": c.metrics["eo_gap"], "eop_gap": c.metrics["eop_gap"]}
              for c in ctx.candidates]  # fmt: skip
    front = pareto_frontier(points, x="accuracy", y=y_key, maximize=(True, y_key == "dp_ratio"))
    pareto = {"fairness_metric": y_key, "utility_metric": "accuracy", "points": points, "frontier": front}
    write_json(d / "pareto.json", pareto)
    plots.plot_pareto(points, front, d / "pareto_frontier.png", y=y_key)
    return {"intersectional": inter, "pareto": pareto}


# ---------------------------------------------------------------------------- orchestration


def _progress(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), transient=False)  # fmt: skip


def run_pipeline(
    cfg: PipelineConfig,
    *,
    df: pd.DataFrame | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline and write the run folder; returns the run record (``run.json``)."""
    started = datetime.now(UTC)
    with threadpool_limits(limits=1, user_api="blas"):  # 2 shared cores: BLAS threads only contend
        ctx = prepare_context(cfg, df)
        with _progress(cfg.progress) as prog:
            task = prog.add_task("pipeline", total=2 + 4 * cfg.gates.max_iterations) if prog is not None else None

            def step(name: str) -> None:
                if prog is not None:
                    prog.update(task, description=name)
                if on_stage is not None:
                    on_stage(name)

            def done() -> None:
                if prog is not None:
                    prog.advance(task)

            record = _run(ctx, step, done)
            if prog is not None:
                prog.update(
                    task, description=f"pipeline: {record['result']}", completed=2 + 4 * cfg.gates.max_iterations
                )
    record["started"] = started.isoformat()
    record["finished"] = datetime.now(UTC).isoformat()
    record["timings"] = ctx.timer.records
    write_json(ctx.out / "run.json", record)
    from .report import write_summary_html

    write_summary_html(ctx.out, record)
    if cfg.incident is not None or cfg.decisions is not None:
        from .plan import write_investigation_and_plan

        with ctx.timer.stage("investigation_plan"):
            record["documents"] = write_investigation_and_plan(ctx.out, record, cfg)
        record["timings"] = ctx.timer.records
        write_json(ctx.out / "run.json", record)
        write_summary_html(ctx.out, record)
    return record


def _final_gate(ctx: PipelineContext, baseline: Candidate, cand: Candidate) -> GateResult:
    """Gate 4 on a candidate that was not post-processed (no thresholds to check)."""
    return postprocess_gate(baseline.metrics, cand.metrics, thresholds=None, target=ctx.cfg.target_fairness,
                            calibration_method=None, constraint_weight=ctx.cfg.constraint_weight,
                            t=ctx.cfg.gates)  # fmt: skip


def _iteration(ctx: PipelineContext, iterations: list[dict[str, Any]], component: str, it: int,
               params: dict[str, Any], cand: Candidate, gate: GateResult) -> dict[str, Any]:  # fmt: skip
    rec = {"component": component, "iteration": it, "start_stage": component, "params": dict(params),
           "candidate": cand.name, "gates": [gate.to_dict()],
           "outcome": "passed" if gate.passed else "failed"}  # fmt: skip
    if not gate.passed:
        rec["failed_gate"] = gate.gate
        rec["rollback"] = gate.on_fail
        ctx.event("rollback", component=component, iteration=it, gate=gate.gate, failure_modes=gate.failure_modes,
                  action=gate.on_fail)  # fmt: skip
    iterations.append(rec)
    return rec


def run_baseline_and_causal(ctx: PipelineContext) -> tuple[Candidate, dict[str, Any], GateResult]:
    """The reference model (with its final-gate verdict) and causal analysis with gate 1."""
    with ctx.timer.stage("baseline"):
        baseline = stage_baseline(ctx)
        baseline.gates.append(_final_gate(ctx, baseline, baseline).to_dict())
    with ctx.timer.stage("causal"):
        causal, gate = stage_causal(ctx)
    return baseline, causal, gate


def run_preprocess_component(ctx: PipelineContext, baseline: Candidate, causal: dict[str, Any],
                             iterations: list[dict[str, Any]]) -> tuple[Prepared | None, Candidate | None]:  # fmt: skip
    """Pre-processing alternatives (decision point 1, gate 2), ≤ max_iterations tries.

    On a failed gate the playbook's alternatives are taken in turn: a lower repair level,
    reweighing instead of disparate-impact removal, or skipping pre-processing. Returns
    the passing preparation with the least accuracy loss, or ``(None, None)`` (skip)."""
    cfg, t = ctx.cfg, ctx.cfg.gates
    repair = cfg.repair_features or causal["biased_mediators"]
    repair = [f for f in repair if f in ctx.features and pd.api.types.is_numeric_dtype(ctx.df[f])]
    tech = cfg.preprocess_technique
    if tech == "auto" or (tech == "disparate_impact_remover" and not repair):
        tech = "disparate_impact_remover" if repair else "reweighing"
    need = tech != "none" and (bool(causal["biased_mediators"]) or
                               (baseline.metrics["min_disparate_impact"] or 0) < t.dp_ratio_min)  # fmt: skip
    ctx.event("decision", point="1: pre-processing needed?", outcome="preprocess" if need else "skip",
              technique=tech, biased_mediators=causal["biased_mediators"],
              baseline_min_disparate_impact=baseline.metrics["min_disparate_impact"],
              recommendation=causal["recommendation"]["strategy"])  # fmt: skip
    params: dict[str, Any] = {"preprocess_technique": tech, "repair_level": float(cfg.repair_level)}
    passing: list[tuple[Prepared, Candidate]] = []
    tried: list[dict[str, Any]] = []
    for it in range(1, t.max_iterations + 1):
        if not need or params["preprocess_technique"] == "none" or params in tried:
            break
        tried.append(dict(params))
        with ctx.timer.stage("preprocess"):
            prepared, cand, gate = stage_preprocess(ctx, params, baseline, it, repair)
        cand.gates.extend([gate.to_dict(), _final_gate(ctx, baseline, cand).to_dict()])
        _iteration(ctx, iterations, "preprocess", it, params, cand, gate)
        if gate.passed:
            passing.append((prepared, cand))
            break
        params.update((gate.on_fail or {}).get("set") or {"preprocess_technique": "none"})
    if not passing:
        ctx.event("decision", point="1b: pre-processing alternatives exhausted or not needed",
                  outcome="skip pre-processing, go on to in-processing on the original data")  # fmt: skip
        return None, None
    prepared, cand = max(passing, key=lambda pc: pc[1].metrics["accuracy"])
    return prepared, cand


def run_inprocess_component(ctx: PipelineContext, baseline: Candidate, prepared: Prepared | None,
                            pre_cand: Candidate | None, proxies: list[str],
                            iterations: list[dict[str, Any]]) -> list[Candidate]:  # fmt: skip
    """In-processing (gate 3) with the gate's adjustments, ≤ max_iterations tries; stops at
    the first passing model. Skipped when the pre-processed model already passes every gate
    (decision point 2)."""
    cfg, t = ctx.cfg, ctx.cfg.gates
    skip = pre_cand is not None and pre_cand.passes_every_gate
    m = (pre_cand or baseline).metrics
    ctx.event("decision", point="2: fairness target met after pre-processing?",
              outcome="skip in-processing" if skip else "in-processing", dp_ratio=m["dp_ratio"],
              eo_gap=m["eo_gap"])  # fmt: skip
    if skip:
        return []
    params: dict[str, Any] = {"inprocess_technique": cfg.inprocess_technique,
                              "constraint_weight": float(cfg.constraint_weight)}  # fmt: skip
    tried: list[dict[str, Any]] = []
    out: list[Candidate] = []
    upstream = pre_cand.gates[:1] if pre_cand is not None else []
    for it in range(1, t.max_iterations + 1):
        tried.append(dict(params))
        with ctx.timer.stage("inprocess"):
            cand, gate = stage_inprocess(ctx, params, baseline, prepared, proxies, it)
        cand.gates.extend([*upstream, gate.to_dict(), _final_gate(ctx, baseline, cand).to_dict()])
        if pre_cand is not None:
            cand.details["upstream"] = pre_cand.name
        _iteration(ctx, iterations, "inprocess", it, params, cand, gate)
        out.append(cand)
        if gate.passed:
            break
        for k, v in ((gate.on_fail or {}).get("set") or {}).items():
            if k == "inprocess_technique" and v == "switch":
                v = "reductions" if params["inprocess_technique"] == "constrained_lr" else "constrained_lr"
            params[k] = v
        if params in tried:  # never repeat a configuration: soften the constraint instead
            params["constraint_weight"] = round(max(0.0, params["constraint_weight"] - 0.2), 2)
    return out


def _post_plan(ctx: PipelineContext, cand: Candidate) -> tuple[bool, bool]:
    """(calibrate, thresholds) a candidate needs (decision point 3)."""
    t, m = ctx.cfg.gates, cand.metrics
    calib_ok = (m["ece"] or 1) < t.ece_overall_max and (m["max_group_ece"] or 1) < t.ece_group_max
    return not calib_ok, not target_met(m, ctx.cfg.target_fairness, t)


def run_postprocess_component(ctx: PipelineContext, baseline: Candidate, upstream: Candidate | None,
                              iterations: list[dict[str, Any]]) -> list[Candidate]:  # fmt: skip
    """Post-processing alternatives (decision points 3 and 4, gate 4), ≤ max_iterations tries.

    Tries, in order: threshold optimization on the base model alone (the playbook's path
    when in-processing's utility cost is too high; also the reference any recommendation
    must beat), the upstream model with calibration and/or thresholds as it needs, and
    the other calibration method for a try whose only shortfall was calibration."""
    cfg, t = ctx.cfg, ctx.cfg.gates
    queue: list[tuple[Candidate, bool, bool, str]] = []
    cal_b, thr_b = _post_plan(ctx, baseline)
    if thr_b or cal_b:
        queue.append((baseline, False, thr_b, cfg.calibration) if thr_b else (baseline, True, False, cfg.calibration))
    if upstream is not None and upstream is not baseline and not upstream.passes_every_gate:
        cal_u, thr_u = _post_plan(ctx, upstream)
        if cal_u or thr_u:
            queue.append((upstream, cal_u, thr_u, cfg.calibration))
    ctx.event("decision", point="3: post-processing needed?",
              outcome="+".join(f"{s.name}:{'calibration' if c else ''}{'+' if c and h else ''}"
                               f"{'thresholds' if h else ''}" for s, c, h, _ in queue) or "skip")  # fmt: skip
    out: list[Candidate] = []
    done: set[tuple[str, bool, bool, str]] = set()
    it = 0
    while queue and it < t.max_iterations:
        source, calibrate, thresholds, method = queue.pop(0)
        if (source.name, calibrate, thresholds, method) in done:
            continue
        done.add((source.name, calibrate, thresholds, method))
        it += 1
        params = {"calibration": method, "constraint_weight": float(cfg.constraint_weight)}
        with ctx.timer.stage("postprocess"):
            cand, gate = stage_postprocess(ctx, params, baseline, source, it, calibrate=calibrate,
                                           thresholds=thresholds)  # fmt: skip
        upstream_gates = [g for g in source.gates if g["gate"] != "final_validation"]
        cand.gates.extend([*upstream_gates, gate.to_dict()])
        cand.details["upstream"] = source.name
        _iteration(ctx, iterations, "postprocess", it, params, cand, gate)
        out.append(cand)
        if gate.passed:
            continue
        if "calibration" in gate.failure_modes:
            nxt = method if not calibrate else ("isotonic" if method != "isotonic" else "platt")
            queue.append((source, True, thresholds, nxt))
    return out


def _target_key(ctx: PipelineContext) -> str:
    return target_metric(ctx.cfg.target_fairness)[0]


def recommend(ctx: PipelineContext, baseline: Candidate) -> tuple[Candidate | None, list[dict[str, Any]]]:
    """The best candidate passing every gate (least accuracy loss; ties: fairer, then name)
    and a short Pareto table (accuracy vs the target metric) of the best trade-offs found."""
    key, higher = target_metric(ctx.cfg.target_fairness)

    def fair(c: Candidate) -> float:
        v = c.metrics.get(key)
        return float("-inf") if v is None else (v if higher else -v)

    passing = [c for c in ctx.candidates if c.passes_every_gate]
    best = min(passing, key=lambda c: (-c.metrics["accuracy"], -fair(c), c.name)) if passing else None
    front = [c for c in ctx.candidates
             if not any(o.metrics["accuracy"] >= c.metrics["accuracy"] and fair(o) >= fair(c)
                        and (o.metrics["accuracy"], fair(o)) != (c.metrics["accuracy"], fair(c))
                        for o in ctx.candidates)]  # fmt: skip
    front.sort(key=lambda c: (-fair(c), c.name))
    table = [{"name": c.name, "stage": c.stage, "accuracy": c.metrics["accuracy"], "f1": c.metrics["f1"],
              "dp_ratio": c.metrics["dp_ratio"], "eo_gap": c.metrics["eo_gap"],
              "max_group_ece": c.metrics["max_group_ece"],
              "accuracy_loss": accuracy_loss(baseline.metrics, c.metrics),
              "target_met": target_met(c.metrics, ctx.cfg.target_fairness, ctx.cfg.gates),
              "passes_every_gate": c.passes_every_gate, "failed_checks": c.record()["failed_checks"]}
             for c in front[:6]]  # fmt: skip
    return best, table


def _run(ctx: PipelineContext, step: Callable[[str], None], done: Callable[[], None]) -> dict[str, Any]:
    cfg, t = ctx.cfg, ctx.cfg.gates
    step("baseline and causal analysis")
    baseline, causal, cgate = run_baseline_and_causal(ctx)
    iterations: list[dict[str, Any]] = [{"component": "causal", "iteration": 1, "start_stage": "causal",
                                         "gates": [cgate.to_dict()],
                                         "outcome": "passed" if cgate.passed else "failed"}]  # fmt: skip
    done()
    escalation: dict[str, Any] | None = None
    if not cgate.passed:
        escalation = {"reason": "causal validation gate failed", "failed_checks": cgate.failed_checks(),
                      "action": cgate.on_fail}  # fmt: skip
    else:
        step("pre-processing")
        prepared, pre_cand = run_preprocess_component(ctx, baseline, causal, iterations)
        done()
        step("in-processing")
        ins = run_inprocess_component(ctx, baseline, prepared, pre_cand, causal["proxies"], iterations)
        done()
        good_in = [c for c in ins if c.gates[-2]["passed"]]
        upstream = max(good_in, key=lambda c: c.metrics["accuracy"]) if good_in else pre_cand
        step("post-processing")
        run_postprocess_component(ctx, baseline, upstream, iterations)
        done()
    best, table = recommend(ctx, baseline)
    if best is not None:
        result = "passed"
        ctx.event("decision", point="4: deploy or iterate?", outcome="deploy (pending stakeholder approval)",
                  model=best.name, candidates=len(ctx.candidates),
                  passing=[c.name for c in ctx.candidates if c.passes_every_gate])  # fmt: skip
    else:
        result = "escalated"
        if escalation is None:
            escalation = {"reason": f"no candidate passes every gate after {len(ctx.candidates)} candidates "
                                    f"(at most {t.max_iterations} iterations per component)",
                          "options": ["accept one of the trade-offs below (document rationale)",
                                      "delay deployment for a fundamental redesign",
                                      "revise fairness targets (if legally permissible)",
                                      "deploy with human oversight"]}  # fmt: skip
        escalation["trade_offs"] = table
        ctx.event("escalation", **escalation)
    # the recommendation, or (escalated) the best trade-off: the most accurate that meets the
    # fairness target within the final accuracy limit, else the fairest on the Pareto table
    key = _target_key(ctx)
    ok = [r for r in table if r["target_met"] and (r["accuracy_loss"] or 0) <= t.final_max_accuracy_loss]
    pick = best.name if best else (max(ok, key=lambda r: r["accuracy"])["name"] if ok else
                                   (table[0]["name"] if table else baseline.name))  # fmt: skip
    chosen = next(c for c in ctx.candidates if c.name == pick)
    chain: list[str] = []
    by_name, cur = {c.name: c for c in ctx.candidates}, chosen
    while cur is not None and cur is not baseline:
        chain.insert(0, cur.name)
        cur = by_name.get(cur.details.get("upstream", ""))
    step("evaluation")
    with ctx.timer.stage("evaluation"):
        evaluation = stage_evaluation(ctx, chosen)
        joblib.dump(chosen.model, ctx.out / "models" / "final.joblib")
    done()
    comp = [it["component"] for it in iterations]
    return {
        "run_id": ctx.out.name,
        "result": result,
        "model": cfg.model_name,
        "config": cfg.to_dict(),
        "data": {
            "rows": len(ctx.df),
            "split": ctx.split.sizes(),
            "features": ctx.features,
            "protected": cfg.protected,
            "primary_attribute": cfg.primary,
            "outcome": cfg.outcome,
        },  # fmt: skip
        "iterations": iterations,
        "iteration_count": max(comp.count(c) for c in set(comp)),
        "iterations_by_component": {c: comp.count(c) for c in sorted(set(comp))},
        "escalation": escalation,
        "causal": causal,
        "baseline": baseline.record(),
        "recommended": best.name if best else None,
        "final": chosen.record(),
        "chain": chain,
        "candidates": [c.record() for c in ctx.candidates],
        "trade_offs": {"fairness_metric": key, "utility_metric": "accuracy", "table": table},
        "evaluation": evaluation,
        "events": ctx.events,
        "pid": os.getpid(),
    }
