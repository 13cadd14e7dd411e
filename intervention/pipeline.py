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
from .artifacts import write_json
from .causal import causal_analysis, load_expert_knowledge, write_dot
from .config import PipelineConfig
from .data import Split, binary_outcome, load_adult, load_table, make_encoder, split_data
from .errors import BAD_VALUE, PipelineInputError, check_columns
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
from .plan import write_investigation_and_plan
from .postprocess import GroupCalibrator, effective_thresholds, make_threshold_optimizer, threshold_sanity
from .preprocess import DisparateImpactRemover, ks_integrity, reweighing_weights
from .report import write_summary_html

__all__ = ["PipelineContext", "Candidate", "run_pipeline", "prepare_context", "headline", "write_json"]

log = logging.getLogger("fairwatch.intervention")

STAGES = ("causal", "preprocess", "inprocess", "postprocess", "evaluation")


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
    parent: str | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gates_passed(self) -> bool:
        """Every gate checked on this candidate passed (vacuously true for the baseline)."""
        return all(g["passed"] for g in self.gates)

    @property
    def final_gate(self) -> dict[str, Any] | None:
        return next((g for g in self.gates if g["gate"] == "final_validation"), None)

    def record(self) -> dict[str, Any]:
        fg = self.final_gate
        return {"name": self.name, "stage": self.stage, "iteration": self.iteration, "params": self.params,
                "metrics": self.metrics, "model_path": self.path, "parent": self.parent,
                "gates": self.gates, "final_gate_passed": None if fg is None else fg["passed"],
                "failed_checks": [f"{g['gate']}.{c['name']}" for g in self.gates for c in g["checks"]
                                  if not c["passed"]]}  # fmt: skip


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
    binary_outcome(df[cfg.outcome])  # before sampling: a bad row is named by its place in the data
    if cfg.sample is not None and int(cfg.sample) < len(df):
        df = df.sample(n=int(cfg.sample), random_state=cfg.seed).reset_index(drop=True)
    for a in cfg.protected:
        df[a] = df[a].astype(object).where(df[a].notna(), "__missing__").astype(str)
        groups = df[a].value_counts()
        if len(groups) < 2:
            held = (
                f"every row is in one group ({groups.index[0]!r}, {int(groups.iloc[0])} rows)"
                if len(groups)
                else "no rows"
            )
            reason = f"{held}; fairness compares groups: at least two are needed"
            raise PipelineInputError(BAD_VALUE.format(field="--protected", value=a, reason=reason), field="--protected")
    y = binary_outcome(df[cfg.outcome])
    skip = set(cfg.protected) | {cfg.outcome} | set(cfg.exclude)
    features = cfg.features or [c for c in df.columns if c not in skip]
    empty = [c for c in features if df[c].isna().all()]
    if empty:  # nothing to learn from, and every statistic of it undefined
        log.warning("features left out: no value in any row: %s", ", ".join(empty))
        features = [c for c in features if c not in empty]
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
        # groups under min_group_size: reported, left out of every ratio, gap and maximum
        "small_groups": {**{a: {g: s["attributes"][a]["groups"][g]["n"]
                                for g in s["attributes"][a]["insufficient_groups"]} for a in cfg.protected},
                         "intersectional": {g: inter["groups"][g]["n"] for g in inter["insufficient_groups"]}},
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
    source: str | None = None  # the pre-processing candidate it came from


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
        integrity = ks_integrity(train, new_train, ctx.features, repaired=repair_features)
        name = f"di_remover_{params['repair_level']:.2f}"
        # the repair's own change (reported in run.json and the plan, not gated)
        moved = {f: {"ks_statistic": integrity[f]["ks_statistic"], "p_value": integrity[f]["p_value"]}
                 for f in repair_features if f in integrity}  # fmt: skip
        p = {"technique": technique, "repair_level": params["repair_level"], "features": repair_features,
             "repaired_features_change": moved}  # fmt: skip
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
                                         {"integrity": integrity}, parent=baseline.name))  # fmt: skip
    gate = preprocess_gate(baseline.metrics, metrics, integrity, target=cfg.target_fairness, technique=technique,
                           repair_level=params.get("repair_level"), t=cfg.gates)  # fmt: skip
    cand.gates.append(gate.to_dict())
    write_json(d / f"preprocess_report_it{iteration}.json", {
        "technique": technique, "params": p, "before": baseline.metrics, "after": metrics,
        "fairness_change": {"dp_ratio": [baseline.metrics["dp_ratio"], metrics["dp_ratio"]],
                            "min_disparate_impact": [baseline.metrics["min_disparate_impact"],
                                                     metrics["min_disparate_impact"]]},
        "accuracy_change": [baseline.metrics["accuracy"], metrics["accuracy"]],
        "integrity": integrity, "gate": gate.to_dict(),
        "repaired_features_change": {f: v for f, v in integrity.items() if v.get("repaired")},
        "integrity_note": "KS and outlier checks cover the non-protected features other than the repaired ones; "
                          "the repaired features' change is the intervention and is reported, not gated"})  # fmt: skip
    ctx.event("gate", iteration=iteration, **gate.to_dict())
    return Prepared(technique, new_train, weights, remover, p, cand.name), cand, gate


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
    if prepared is not None and prepared.source is not None:
        name = f"{prepared.source.rsplit('_it', 1)[0]}+{name}"
    p["data"] = prepared.source if prepared is not None and prepared.source else "original training data"
    cand = _add_candidate(ctx, Candidate(name, "inprocess", iteration, p, full, metrics, {"convergence": conv},
                                         parent=prepared.source if prepared is not None and prepared.source
                                         else baseline.name))  # fmt: skip
    gate = inprocess_gate(baseline.metrics, metrics, conv, target=cfg.target_fairness, technique=technique,
                          constraint_weight=params["constraint_weight"], t=cfg.gates)  # fmt: skip
    cand.gates.append(gate.to_dict())
    write_json(ctx.out / "inprocess" / f"inprocess_report_{name}.json", {
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
    recheck_target: bool = True,
) -> tuple[Candidate, GateResult]:
    """Group calibration and/or group thresholds on ``source``; gate 4 on the result.

    With ``recheck_target`` a calibration that loses the fairness target gets thresholds
    too (the pipeline's path); without, calibration alone is measured."""
    cfg = ctx.cfg
    d = ctx.out / "postprocess"
    d.mkdir(parents=True, exist_ok=True)
    val, test = ctx.part("validation"), ctx.part("test")
    yv, yt = ctx.y_part("validation"), ctx.y_part("test")
    model: Any = source.model
    tag = f"{source.name}-it{iteration}"  # file names: one per (source, post-processing iteration)
    p_before = model.predict_proba(test)[:, 1]
    calib = {
        "method": None,
        "ece_before": round(expected_calibration_error(yt, p_before) or 0.0, 6),
        "ece_by_group_before": ece_by_group(yt, p_before, sensitive_features=test[cfg.primary].to_numpy()),
    }
    curves = {g: (yt[test[cfg.primary].to_numpy() == g], p_before[test[cfg.primary].to_numpy() == g])
              for g in sorted(test[cfg.primary].unique())}  # fmt: skip
    plots.plot_reliability(curves, d / f"reliability_before_{tag}.png",
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
        plots.plot_reliability(curves, d / f"reliability_after_{tag}.png",
                               title=f"Reliability after group {params['calibration']} calibration")  # fmt: skip
        steps.append(f"group_{params['calibration']}")
    thr_report = None
    sanity = None
    if calibrate and not thresholds and recheck_target:
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
                                         model, metrics, {"calibration": calib, "thresholds": thr_report},
                                         parent=source.name))  # fmt: skip
    gate = postprocess_gate(baseline.metrics, metrics, thresholds=sanity, target=cfg.target_fairness,
                            calibration_method=calib["method"], constraint_weight=params["constraint_weight"],
                            t=cfg.gates)  # fmt: skip
    cand.gates.append(gate.to_dict())
    write_json(d / f"calibration_report_{tag}.json", calib)
    if thr_report is not None:
        write_json(d / f"threshold_report_{tag}.json", thr_report)
    ctx.event("gate", iteration=iteration, **gate.to_dict())
    return cand, gate


def assess_calibration(ctx: PipelineContext, cand: Candidate, iteration: int) -> dict[str, Any]:
    """ECE overall and per group + reliability diagram of a model (post-processing step 1)."""
    cfg = ctx.cfg
    d = ctx.out / "postprocess"
    test, yt = ctx.part("test"), ctx.y_part("test")
    p = cand.model.predict_proba(test)[:, 1]
    g = test[cfg.primary].to_numpy()
    tag = f"{cand.name}-it{iteration}"
    rep = {"model": cand.name, "method": None, "ece_before": expected_calibration_error(yt, p),
           "ece_by_group_before": ece_by_group(yt, p, sensitive_features=g)}  # fmt: skip
    plots.plot_reliability({k: (yt[g == k], p[g == k]) for k in sorted(set(g.tolist()))},
                           d / f"reliability_before_{tag}.png", title=f"Reliability ({cand.name})")  # fmt: skip
    write_json(d / f"calibration_report_{tag}.json", rep)
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
    write_summary_html(ctx.out, record)
    # every run writes its plan: passed, draft (DAG awaits expert review) or escalated
    with ctx.timer.stage("investigation_plan"):
        record["documents"] = write_investigation_and_plan(ctx.out, record, cfg)
    record["timings"] = ctx.timer.records
    write_json(ctx.out / "run.json", record)
    write_summary_html(ctx.out, record)
    return record


@dataclass
class Search:
    """State of the alternative search: attempts per component, the time bound, the record.

    Each component (pre-, in-, post-processing) makes at most ``gates.max_iterations``
    attempts (post-processing: per source model); the whole search stops starting new
    attempts once ``cfg.time_budget_seconds`` have passed (recorded, so a truncated
    search is never mistaken for an exhausted one).
    """

    ctx: PipelineContext
    baseline: Candidate
    step: Callable[[str], None]
    done: Callable[[], None]
    deadline: float
    iterations: list[dict[str, Any]] = field(default_factory=list)
    budget_exhausted: str | None = None

    def out_of_time(self, what: str) -> bool:
        if time.monotonic() < self.deadline:
            return False
        if self.budget_exhausted is None:
            self.budget_exhausted = what
            self.ctx.event("time_budget", outcome="exhausted", skipped=what,
                           budget_seconds=self.ctx.cfg.time_budget_seconds)  # fmt: skip
        return True

    def attempt(self, component: str, iteration: int, cand: Candidate, gate: GateResult,
                params: dict[str, Any], nxt: dict[str, Any] | None = None) -> None:  # fmt: skip
        rec = {
            "component": component,
            "iteration": iteration,
            "start_stage": component,
            "candidate": cand.name,
            "params": dict(params),
            "gates": [gate.to_dict()],
            "outcome": "passed" if gate.passed else "failed",
        }
        if not gate.passed:
            rec["failed_gate"] = gate.gate
            rec["rollback"] = nxt or {"destination": "none", "adjustment": "no untried alternative left"}
            self.ctx.event("rollback", iteration=iteration, component=component, gate=gate.gate,
                           failure_modes=gate.failure_modes, action=rec["rollback"])  # fmt: skip
        self.iterations.append(rec)


def _technique_key(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(params.items()))


def _search_causal(s: Search) -> dict[str, Any]:
    """Gate 1. Without an approved DAG the run goes on as a *draft*: nothing it finds is
    deployed before domain experts review the (data-proposed) DAG."""
    s.step("causal analysis")
    with s.ctx.timer.stage("causal"):
        causal, gate = stage_causal(s.ctx)
    causal["gate_passed"] = gate.passed
    s.iterations.append({"component": "causal", "iteration": 1, "start_stage": "causal", "params": {},
                         "gates": [gate.to_dict()], "outcome": "passed" if gate.passed else "draft"})  # fmt: skip
    if not gate.passed:
        s.ctx.event("decision", point="1a: causal gate failed", outcome="continue as draft (awaits expert review)",
                    failed_checks=gate.failed_checks())  # fmt: skip
    s.done()
    return causal


def _search_preprocess(s: Search, causal: dict[str, Any]) -> list[tuple[Prepared, Candidate]]:
    """Decision point 1 and gate 2, with the playbook's alternatives on failure: lower
    ``repair_level``, reweighing instead of disparate-impact removal, or skipping
    pre-processing (in-processing then trains on the original data)."""
    ctx, cfg, t, baseline = s.ctx, s.ctx.cfg, s.ctx.cfg.gates, s.baseline
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
    s.done()
    if not need:
        return []
    params: dict[str, Any] = {"preprocess_technique": tech, "repair_level": float(cfg.repair_level)}
    tried: list[tuple[Any, ...]] = []
    for it in range(1, t.max_iterations + 1):
        if s.out_of_time(f"pre-processing iteration {it}"):
            break
        tried.append(_technique_key(params))
        s.step(f"pre-processing: {params['preprocess_technique']} (iteration {it})")
        with ctx.timer.stage("preprocess"):
            prepared, cand, gate = stage_preprocess(ctx, params, baseline, it, repair)
        nxt = None if gate.passed else _next_preprocess(params, gate, tried, it < t.max_iterations, bool(repair))
        s.attempt("preprocess", it, cand, gate, params, nxt)
        if gate.passed:
            return [(prepared, cand)]
        if nxt is None or nxt["destination"] != "preprocess":
            break
        params = {**params, **nxt["set"]}
    return []


def _next_preprocess(params: dict[str, Any], gate: GateResult, tried: list[tuple[Any, ...]],
                     more: bool, can_repair: bool) -> dict[str, Any] | None:  # fmt: skip
    """The next untried pre-processing configuration the failed gate points to."""
    action = dict(gate.on_fail or {})
    if (action.get("set") or {}).get("preprocess_technique") == "none":
        return {"destination": "inprocess", "adjustment": "skip pre-processing; in-processing on the original data"}
    if not more:
        return {"destination": "inprocess", "adjustment": "iteration limit reached; in-processing on the original data"}
    options = [action.get("set") or {}]
    other = "reweighing" if params["preprocess_technique"] == "disparate_impact_remover" else "disparate_impact_remover"
    options.append({"preprocess_technique": other})
    for opt in options:
        if opt.get("preprocess_technique") == "disparate_impact_remover" and not can_repair:
            continue  # no numeric feature to repair
        if opt and _technique_key({**params, **opt}) not in tried:
            adj = action.get("adjustment") if opt is options[0] else f"switch technique -> {other}"
            return {"destination": "preprocess", "adjustment": adj, "set": opt}
    return {
        "destination": "inprocess",
        "adjustment": "no untried pre-processing left; in-processing on the original data",
    }


@dataclass
class InprocessState:
    """Where the in-processing search stands: it resumes here when post-processing of
    its validated model fails (the playbook's rollback from post- to in-processing)."""

    params: dict[str, Any]
    prepared: Prepared | None
    iteration: int = 0
    tried: list[tuple[Any, ...]] = field(default_factory=list)
    last: dict[tuple[str, str | None], Any] = field(default_factory=dict)  # (technique, data) -> target metric

    def key(self, params: dict[str, Any], prepared: Prepared | None) -> tuple[Any, ...]:
        return (*_technique_key(params), prepared.source if prepared is not None else None)


def _switch(technique: str) -> str:
    return "reductions" if technique == "constrained_lr" else "constrained_lr"


def _search_inprocess(s: Search, causal: dict[str, Any], st: InprocessState) -> Candidate | None:
    """Gate 3 with its alternatives: constraint weight up or down, constrained LR ↔
    reductions, and — when pre-processed data costs too much utility — the original data."""
    ctx, cfg, t, baseline = s.ctx, s.ctx.cfg, s.ctx.cfg.gates, s.baseline
    while st.iteration < t.max_iterations:
        it = st.iteration = st.iteration + 1
        params, prepared = st.params, st.prepared
        if s.out_of_time(f"in-processing iteration {it}"):
            return None
        st.tried.append(st.key(params, prepared))
        s.step(f"in-processing: {params['inprocess_technique']} (iteration {it})")
        with ctx.timer.stage("inprocess"):
            cand, gate = stage_inprocess(ctx, params, baseline, prepared, causal["proxies"], it)
        if gate.passed:
            s.attempt("inprocess", it, cand, gate, params)
            return cand
        action = dict(gate.on_fail or {"set": {}})
        key_metric, higher = target_metric(cfg.target_fairness)
        now = cand.metrics.get(key_metric)
        slot = (params["inprocess_technique"], prepared.source if prepared is not None else None)
        before = st.last.get(slot)
        st.last[slot] = now
        if ("fairness_insufficient" in gate.failure_modes and before is not None and now is not None
                and (now <= before if higher else now >= before)):  # fmt: skip
            # a stronger constraint did not move the target: the playbook's other path
            action = {"destination": "inprocess", "adjustment": "constraint weight did not help; switch technique",
                      "set": {"inprocess_technique": "switch"}}  # fmt: skip
        new = dict(params)
        for k, v in (action.get("set") or {}).items():
            new[k] = _switch(params["inprocess_technique"]) if k == "inprocess_technique" and v == "switch" else v
        new_prepared = prepared
        if "utility_cost" in gate.failure_modes and prepared is not None:
            # playbook: skip pre-processing and go on to in-processing on the original data
            new, new_prepared = dict(params), None
            action = {"destination": "inprocess", "adjustment": "drop pre-processing: train on the original data"}
        if st.key(new, new_prepared) in st.tried:
            new["constraint_weight"] = round(max(0.0, new["constraint_weight"] - 0.2), 2)
            action = {**action, "adjustment": f"configuration already tried; soften constraint_weight -> "
                                              f"{new['constraint_weight']}"}  # fmt: skip
        if "utility_cost" in gate.failure_modes:
            ctx.event("decision", point="3: in-processing utility cost too high",
                      outcome="threshold optimization on the models without in-processing",
                      accuracy=cand.metrics["accuracy"], f1=cand.metrics["f1"])  # fmt: skip
        if it == t.max_iterations:
            action = {"destination": "postprocess", "adjustment": f"iteration limit ({t.max_iterations}) reached; "
                      "post-processing goes on with the models validated so far"}  # fmt: skip
        s.attempt("inprocess", it, cand, gate, params, action)
        st.params, st.prepared = new, new_prepared
    return None


def _rollback_to_inprocess(s: Search, st: InprocessState, cand: Candidate) -> None:
    """Post-processing could not validate ``cand``: back to in-processing with the other
    technique (playbook: post-processing cannot fix a poor base model)."""
    new = {**st.params, "inprocess_technique": _switch(st.params["inprocess_technique"])}
    if st.key(new, st.prepared) in st.tried:
        new = {**st.params, "constraint_weight": round(max(0.0, st.params["constraint_weight"] - 0.2), 2)}
    s.ctx.event("rollback", component="postprocess", source=cand.name, action={
        "destination": "inprocess", "adjustment": f"post-processing could not validate {cand.name}; "
        f"in-processing with {new['inprocess_technique']}, constraint_weight {new['constraint_weight']}"})  # fmt: skip
    st.params = new


def _search_postprocess(s: Search, source: Candidate) -> None:
    """Decision point 3 and gate 4 on one source model, with the alternatives: the other
    calibration method when ECE fails, thresholds when calibration alone misses the target."""
    ctx, cfg, t, baseline = s.ctx, s.ctx.cfg, s.ctx.cfg.gates, s.baseline
    m = source.metrics
    fair = target_met(m, cfg.target_fairness, t)
    calib_ok = (m["ece"] or 1) < t.ece_overall_max and (m["max_group_ece"] or 1) < t.ece_group_max
    calibrate, thresholds = not calib_ok, not fair
    ctx.event("decision", point="3: post-processing needed?", source=source.name,
              outcome=("skip" if not (calibrate or thresholds) else
                       "+".join(x for x, on in (("calibration", calibrate), ("thresholds", thresholds)) if on)),
              fairness_target_met=fair, ece=m["ece"], max_group_ece=m["max_group_ece"])  # fmt: skip
    methods = [cfg.calibration, *[c for c in ("platt", "isotonic") if c != cfg.calibration]]
    params = {"calibration": methods[0], "constraint_weight": float(cfg.constraint_weight)}
    used = {methods[0]} if calibrate else set()
    for it in range(1, t.max_iterations + 1):
        if s.out_of_time(f"post-processing of {source.name}, iteration {it}"):
            return
        s.step(f"post-processing {source.name} (iteration {it})")
        with ctx.timer.stage("postprocess"):
            if calibrate or thresholds:
                cand, gate = stage_postprocess(ctx, params, baseline, source, it, calibrate=calibrate,
                                               thresholds=thresholds)  # fmt: skip
            else:
                cand = source
                assess_calibration(ctx, source, it)
                gate = postprocess_gate(
                    baseline.metrics,
                    m,
                    thresholds=None,
                    target=cfg.target_fairness,
                    calibration_method=None,
                    constraint_weight=params["constraint_weight"],
                    t=t,
                )
                source.gates.append(gate.to_dict())
                ctx.event("gate", iteration=it, **gate.to_dict())
        nxt: dict[str, Any] | None = None
        if not gate.passed and it < t.max_iterations:
            left = [c for c in methods if c not in used]
            if "calibration" in gate.failure_modes and left:
                nxt = {"destination": "postprocess", "adjustment": f"switch calibration -> {left[0]}",
                       "set": {"calibration": left[0]}}  # fmt: skip
            elif "fairness_insufficient" in gate.failure_modes and not (thresholds or cand.details.get("thresholds")):
                nxt = {"destination": "postprocess", "adjustment": "add group threshold optimization", "set": {}}
        s.attempt("postprocess", it, cand, gate, {**params, "source": source.name, "calibrate": calibrate,
                                                  "thresholds": thresholds}, nxt)  # fmt: skip
        if gate.passed or nxt is None:
            return
        if "calibration" in nxt["set"]:
            params = {**params, **nxt["set"]}
            used.add(params["calibration"])
            calibrate = True
        else:
            thresholds = True


def _search_reference(s: Search) -> None:
    """Thresholds alone on the baseline — fairlearn's ThresholdOptimizer on the base model,
    the reference a recommendation must beat — when the baseline's post-processing did not
    try it (its baseline met the target, so only calibration was needed). Counts as one
    more post-processing iteration of the baseline, within the limit."""
    ctx, t, baseline = s.ctx, s.ctx.cfg.gates, s.baseline
    if any(c.parent == baseline.name and c.params.get("steps") == [f"thresholds_{ctx.cfg.threshold_constraint}"]
           for c in ctx.candidates):  # fmt: skip
        return
    it = 1 + sum(
        1 for r in s.iterations if r["component"] == "postprocess" and r["params"].get("source") == baseline.name
    )
    if it > t.max_iterations or s.out_of_time(f"threshold optimization alone on {baseline.name}"):
        return
    ctx.event("decision", point="3: threshold optimization alone on the base model?", outcome="try (the reference)",
              source=baseline.name)  # fmt: skip
    params = {"calibration": None, "constraint_weight": float(ctx.cfg.constraint_weight)}
    s.step(f"post-processing {baseline.name}: thresholds alone (iteration {it})")
    with ctx.timer.stage("postprocess"):
        cand, gate = stage_postprocess(ctx, params, baseline, baseline, it, calibrate=False, thresholds=True)
    s.attempt("postprocess", it, cand, gate, {**params, "source": baseline.name, "calibrate": False,
                                              "thresholds": True})  # fmt: skip


def _lineage(ctx: PipelineContext, cand: Candidate) -> list[Candidate]:
    by = {c.name: c for c in ctx.candidates}
    out, cur = [], cand
    while cur is not None:
        out.append(cur)
        cur = by.get(cur.parent) if cur.parent else None
    return out[::-1]


def eligible(ctx: PipelineContext) -> list[Candidate]:
    """Candidates whose final gate passed and whose every ancestor passed its own gates."""
    return [c for c in ctx.candidates if c.final_gate is not None and all(a.gates_passed for a in _lineage(ctx, c))]


def _rank_key(ctx: PipelineContext, c: Candidate) -> tuple[float, float, str]:
    key, higher = target_metric(ctx.cfg.target_fairness)
    v = c.metrics.get(key)
    fair = -1e9 if v is None else (v if higher else -v)
    return (-(c.metrics["accuracy"] or 0.0), -fair, c.name)


def tradeoffs(ctx: PipelineContext, limit: int = 6) -> list[dict[str, Any]]:
    """The Pareto frontier (accuracy vs the target metric) of every candidate, best
    accuracy first, each with the checks it failed — the table of an escalation."""
    key, higher = target_metric(ctx.cfg.target_fairness)
    pool = list(ctx.candidates)
    pts = [{"name": c.name, "accuracy": c.metrics["accuracy"], key: c.metrics[key]} for c in pool]
    front = set(pareto_frontier(pts, x="accuracy", y=key, maximize=(True, higher)))
    rows = sorted((c for c in pool if c.name in front), key=lambda c: _rank_key(ctx, c))[:limit]
    return [{"name": c.name, "stage": c.stage, "accuracy": c.metrics["accuracy"],
             "accuracy_loss": accuracy_loss(ctx.candidates[0].metrics, c.metrics), "f1": c.metrics["f1"],
             "dp_ratio": c.metrics["dp_ratio"], "eo_gap": c.metrics["eo_gap"],
             "max_group_ece": c.metrics["max_group_ece"],
             "target_met": target_met(c.metrics, ctx.cfg.target_fairness, ctx.cfg.gates),
             "final_validated": c.final_gate is not None,
             "failed_checks": c.record()["failed_checks"]} for c in rows]  # fmt: skip


def best_tradeoff(ctx: PipelineContext) -> Candidate:
    """The escalation's proposal: the most accurate finally validated candidate that meets
    the fairness target within the final accuracy limit; else the frontier's fairest."""
    t = ctx.cfg.gates
    pool = [c for c in ctx.candidates if c.final_gate is not None]
    ok = [c for c in pool if target_met(c.metrics, ctx.cfg.target_fairness, t)
          and (accuracy_loss(ctx.candidates[0].metrics, c.metrics) or 0) <= t.final_max_accuracy_loss]  # fmt: skip
    if ok:
        return sorted(ok, key=lambda c: _rank_key(ctx, c))[0]
    key, higher = target_metric(ctx.cfg.target_fairness)
    scored = [c for c in pool if c.metrics.get(key) is not None] or [ctx.candidates[0]]
    return sorted(scored, key=lambda c: ((-1 if higher else 1) * (c.metrics.get(key) or 0), c.name))[0]


def _conclude(s: Search, causal: dict[str, Any]) -> tuple[str, Candidate, dict[str, Any] | None]:
    """Decision point 4: the best candidate passing every gate, or an escalation."""
    ctx = s.ctx
    ok = sorted(eligible(ctx), key=lambda c: _rank_key(ctx, c))
    if ok:
        best = ok[0]
        result = "passed" if causal["gate_passed"] else "draft"
        ctx.event("decision", point="4: deploy or iterate?", model=best.name, eligible=[c.name for c in ok],
                  outcome="deploy (pending stakeholder approval)" if result == "passed" else
                  "draft: the causal DAG awaits expert review; nothing is deployed")  # fmt: skip
        return result, best, None
    best = best_tradeoff(ctx)
    pick = best.name
    rows = tradeoffs(ctx)
    if pick not in {r["name"] for r in rows}:
        rows = [*rows[:-1], *[r for r in tradeoffs(ctx, limit=len(ctx.candidates)) if r["name"] == pick]]
    counts = {
        k: sum(1 for r in s.iterations if r["component"] == k) for k in ("preprocess", "inprocess", "postprocess")
    }
    escalation = {"reason": "no candidate passed every gate" + (f" (time budget exhausted before {s.budget_exhausted})"
                                                                if s.budget_exhausted else ""),
                  "attempts": counts, "best_tradeoff": pick, "tradeoffs": rows,
                  "options": ["accept the current fairness-utility trade-off (document rationale)",
                              "delay deployment for a fundamental redesign",
                              "revise fairness targets (if legally permissible)",
                              "deploy with human oversight"]}  # fmt: skip
    ctx.event("decision", point="4: deploy or iterate?", outcome="escalate to the executive sponsor", model=pick)
    ctx.event("escalation", **escalation)
    return "escalated", best, escalation


def _run(ctx: PipelineContext, step: Callable[[str], None], done: Callable[[], None]) -> dict[str, Any]:
    cfg = ctx.cfg
    step("baseline")
    with ctx.timer.stage("baseline"):
        baseline = stage_baseline(ctx)
    done()
    s = Search(ctx, baseline, step, done, deadline=time.monotonic() + float(cfg.time_budget_seconds))
    causal = _search_causal(s)
    pre = _search_preprocess(s, causal)
    pre_cand = pre[0][1] if pre else None
    # decision point 2 (and, without pre-processing, the same question of the baseline):
    # a model that already meets the target goes straight to post-processing
    current = pre_cand or baseline
    skip_in = target_met(current.metrics, cfg.target_fairness, cfg.gates) and (
        (accuracy_loss(baseline.metrics, current.metrics) or 0) <= cfg.gates.preprocess_max_accuracy_loss)  # fmt: skip
    ctx.event(
        "decision",
        point="2: fairness target met after pre-processing?",
        outcome="skip in-processing" if skip_in else "in-processing",
        model=current.name,
        dp_ratio=current.metrics["dp_ratio"],
        eo_gap=current.metrics["eo_gap"],
    )
    if not skip_in:
        start = {"inprocess_technique": cfg.inprocess_technique, "constraint_weight": float(cfg.constraint_weight)}
        st = InprocessState(start, pre[0][0] if pre else None)
        while (cand := _search_inprocess(s, causal, st)) is not None:
            _search_postprocess(s, cand)
            if any(cand in _lineage(ctx, e) for e in eligible(ctx)) or st.iteration >= cfg.gates.max_iterations:
                break
            _rollback_to_inprocess(s, st, cand)
    done()
    # Then the validated pre-processing model and the baseline; decision point 3's threshold
    # path on the baseline needs no retraining, so it is always tried (it is what a reviewer
    # compares the pipeline against: fairlearn's ThresholdOptimizer on the baseline model).
    for src in [*([pre_cand] if pre_cand is not None else []), baseline]:
        _search_postprocess(s, src)
    _search_reference(s)
    done()
    result, chosen, escalation = _conclude(s, causal)
    step("evaluation")
    with ctx.timer.stage("evaluation"):
        evaluation = stage_evaluation(ctx, chosen)
        joblib.dump(chosen.model, ctx.out / "models" / "final.joblib")
    done()
    return _record(ctx, s, result, chosen, escalation, causal, baseline, evaluation)


def _record(ctx: PipelineContext, s: Search, result: str, chosen: Candidate, escalation: dict[str, Any] | None,
            causal: dict[str, Any], baseline: Candidate, evaluation: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    cfg = ctx.cfg
    per = {k: max((r["iteration"] for r in s.iterations if r["component"] == k), default=0)
           for k in ("preprocess", "inprocess", "postprocess")}  # fmt: skip
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
            "small_groups": baseline.metrics.get("small_groups", {}),
            "min_group_size": cfg.min_group_size,
        },  # fmt: skip
        "iterations": s.iterations,
        "iteration_count": max(per.values()),
        "iterations_per_component": per,
        "time_budget": {"seconds": cfg.time_budget_seconds, "exhausted_before": s.budget_exhausted},
        "escalation": escalation,
        "causal": causal,
        "baseline": baseline.record(),
        "final": chosen.record(),
        "recommended": chosen.name if result != "escalated" else None,
        "eligible": [c.name for c in sorted(eligible(ctx), key=lambda c: _rank_key(ctx, c))],
        "chain": [c.name for c in _lineage(ctx, chosen) if c is not baseline],
        "candidates": [c.record() for c in ctx.candidates],
        "evaluation": evaluation,
        "events": ctx.events,
        "pid": os.getpid(),
    }
