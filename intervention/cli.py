"""``fairwatch pipeline …``: a thin argparse layer over the library calls.

Usage errors (bad option value, missing column, unreadable file) print one line naming
the option, the bad value and the valid choices, and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import PipelineInputError

__all__ = ["add_pipeline_parser", "main", "EXIT_OK", "EXIT_ESCALATED", "EXIT_USAGE", "EXIT_DRAFT"]

EXIT_OK = 0
EXIT_ESCALATED = 1
EXIT_USAGE = 2
EXIT_DRAFT = 4  # a candidate passed every gate, but the causal DAG awaits expert review

_CONSTRAINTS = ["demographic_parity", "equalized_odds", "equal_opportunity", "equality_of_opportunity"]


def _common(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--data", help="CSV/Parquet/JSONL data, or UCI adult.data/adult.test (comma-separated list)")
    p.add_argument("--protected", help="protected attributes, comma-separated (first = primary)")
    p.add_argument("--outcome", help="binary outcome column (1 = favorable)")
    p.add_argument("--features", help="model features, comma-separated (default: all other columns)")
    p.add_argument("--exclude", help="columns never used as features, comma-separated")
    p.add_argument("--mediators", help="mediators stated by domain experts, comma-separated")
    p.add_argument("--expert-knowledge", dest="expert_knowledge", help="expert-knowledge JSON (causal DAG)")
    p.add_argument("--target-fairness", dest="target_fairness", choices=_CONSTRAINTS)
    p.add_argument("--fairness-constraint", dest="fairness_constraint", choices=_CONSTRAINTS)
    p.add_argument("--repair-level", dest="repair_level", type=float, help="disparate impact repair level in [0, 1]")
    p.add_argument("--constraint-weight", dest="constraint_weight", type=float, help="constraint strength in [0, 1]")
    p.add_argument("--base-estimator", dest="base_estimator",
                   choices=["logistic_regression", "gradient_boosting", "random_forest"])  # fmt: skip
    p.add_argument("--seed", type=int)
    p.add_argument("--sample", type=int, help="use a random sample of this many rows")
    p.add_argument("--output", help="output folder (or .csv for preprocess)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)


_KEYS = ("data", "protected", "outcome", "features", "exclude", "mediators", "expert_knowledge", "target_fairness",
         "fairness_constraint", "repair_level", "constraint_weight", "base_estimator", "seed", "sample", "output",
         "progress")  # fmt: skip


def _config(args: argparse.Namespace, **extra: Any) -> Any:
    from .config import PipelineConfig, load_config

    values = {k: getattr(args, k, None) for k in _KEYS}
    values.update({k: v for k, v in extra.items() if v is not None})
    if getattr(args, "config", None):
        return load_config(args.config, **values)
    return PipelineConfig(**{k: v for k, v in values.items() if v is not None})


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import run_pipeline

    cfg = _config(args, incident=_read_json(args.incident, "--incident"), decisions=args.decisions)
    rec = run_pipeline(cfg)
    _print({"run": str(Path(cfg.output)), "result": rec["result"], "iterations": rec["iteration_count"],
            "final": rec["final"]["name"], "documents": rec.get("documents")})  # fmt: skip
    return {"passed": EXIT_OK, "draft": EXIT_DRAFT}.get(rec["result"], EXIT_ESCALATED)


def _cmd_causal(args: argparse.Namespace) -> int:
    from .stages import run_causal

    r = run_causal(_config(args))
    _print({k: r[k] for k in ("mediators", "confounders", "proxies", "resolving", "adjustment_sets", "recommendation")})
    return EXIT_OK


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from .stages import run_preprocess

    r = run_preprocess(_config(args, preprocess_technique=args.technique))
    _print({"before": r["before"]["dp_ratio"], "after": r["after"]["dp_ratio"], "gate_passed": r["gate"]["passed"]})
    return EXIT_OK


def _cmd_inprocess(args: argparse.Namespace) -> int:
    from .stages import run_inprocess

    r = run_inprocess(_config(args, inprocess_technique=args.technique))
    _print({"model": r["model"], "after": r["after"], "gate_passed": r["gate"]["passed"]})
    return EXIT_OK


def _cmd_postprocess(args: argparse.Namespace) -> int:
    from .stages import run_postprocess

    r = run_postprocess(_config(args, calibration=args.calibration), args.model,
                        thresholds=not args.no_thresholds)  # fmt: skip
    _print({"model": r["model"], "calibration": r["calibration"], "gate_passed": r["gate"]["passed"]})
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .stages import run_evaluate

    r = run_evaluate(_config(args), [m for m in args.models.split(",") if m])
    _print(r["pareto"])
    return EXIT_OK


def _read_json(path: str | None, field: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineInputError(f"{field}: cannot read {path!r}: {exc}", field=field) from exc


def _cmd_investigate(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from .artifacts import write_json
    from .data import load_table
    from .investigation import investigate
    from .plan import allocate_id, markdown_to_html, render_investigation

    incident = _read_json(args.incident, "--incident")
    if not isinstance(incident, dict):
        raise PipelineInputError(f"--incident: {args.incident!r} must hold a JSON object", field="--incident")
    inv = investigate(incident, load_table(args.decisions, field="--decisions"))
    out = Path(args.output or "investigation")
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ident = allocate_id(out.parent / ".faf-ids", now)
    write_json(out / "investigation.json", {"id": ident, **inv})
    md = render_investigation(inv, ident, now)
    (out / "investigation.md").write_text(md, encoding="utf-8")
    (out / "investigation.html").write_text(
        markdown_to_html(md, title=f"Drift Investigation {ident}"), encoding="utf-8"
    )
    _print({"id": ident, "since": inv["since"], "most_affected_groups": inv["most_affected_groups"]})
    return EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from .plan import allocate_id, markdown_to_html, render_plan

    run = Path(args.run)
    record = _read_json(str(run / "run.json"), "--run")
    inv = _read_json(args.investigation, "--investigation")
    now = datetime.now(UTC)
    out = Path(args.output or run)
    out.mkdir(parents=True, exist_ok=True)
    plan_id = allocate_id(out.parent / ".faf-ids", now)
    inv_id = inv.get("id") if inv else None
    md = render_plan(record, plan_id=plan_id, assessment_id=inv_id or plan_id, investigation=inv,
                     investigation_id=inv_id, date=now)  # fmt: skip
    (out / "remediation_plan.md").write_text(md, encoding="utf-8")
    (out / "remediation_plan.html").write_text(markdown_to_html(md, title=f"Remediation Plan {plan_id}"),
                                               encoding="utf-8")  # fmt: skip
    _print({"plan_id": plan_id, "path": str(out / "remediation_plan.md")})
    return EXIT_OK


def _guard(handler: Any) -> Any:
    """Wrap a handler so usage errors print one line and return 2 (never a traceback)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except PipelineInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def add_pipeline_parser(subparsers: Any) -> None:
    """Add the ``pipeline`` command (run|causal|preprocess|inprocess|postprocess|evaluate|investigate|plan)."""
    pipe = subparsers.add_parser("pipeline", help="offline bias-intervention pipeline (the playbook)")
    sub = pipe.add_subparsers(dest="pipeline_command", metavar="STAGE", required=True)

    p = sub.add_parser("run", help="run every stage with gates, rollback and escalation")
    p.add_argument("--config", help="pipeline.yaml")
    _common(p)
    p.add_argument("--incident", help="incident JSON (model, metric, attribute, groups, windows)")
    p.add_argument("--decisions", help="recent labeled decisions (for the investigation)")
    p.set_defaults(func=_guard(_cmd_run))

    p = sub.add_parser("causal", help="causal DAG, roles, adjustment sets, sensitivity")
    _common(p)
    p.set_defaults(func=_guard(_cmd_causal))

    p = sub.add_parser("preprocess", help="disparate impact remover or reweighing + KS integrity")
    _common(p)
    p.add_argument("--technique", choices=["auto", "disparate_impact_remover", "reweighing"], default="auto")
    p.set_defaults(func=_guard(_cmd_preprocess))

    p = sub.add_parser("inprocess", help="fairness-constrained LR or exponentiated-gradient reductions")
    _common(p)
    p.add_argument("--technique", choices=["constrained_lr", "reductions"], default="constrained_lr")
    p.set_defaults(func=_guard(_cmd_inprocess))

    p = sub.add_parser("postprocess", help="ECE, group calibration, threshold optimization")
    _common(p)
    p.add_argument("--model", required=True, help="model .joblib written by the pipeline")
    p.add_argument("--calibration", choices=["platt", "isotonic"], default="platt")
    p.add_argument("--no-thresholds", action="store_true", help="calibrate only")
    p.set_defaults(func=_guard(_cmd_postprocess))

    p = sub.add_parser("evaluate", help="intersectional report and Pareto frontier of models")
    _common(p)
    p.add_argument("--models", required=True, help="model .joblib files, comma-separated")
    p.set_defaults(func=_guard(_cmd_evaluate))

    p = sub.add_parser("investigate", help="drift investigation report of an incident")
    p.add_argument("--incident", required=True)
    p.add_argument("--decisions", required=True)
    p.add_argument("--output")
    p.set_defaults(func=_guard(_cmd_investigate))

    p = sub.add_parser("plan", help="Fairness Drift Remediation Plan from a run")
    p.add_argument("--run", required=True, help="run folder (with run.json)")
    p.add_argument("--investigation", help="investigation.json")
    p.add_argument("--output")
    p.set_defaults(func=_guard(_cmd_plan))


def dispatch(args: argparse.Namespace) -> int:
    """Run a parsed command; usage errors become one line on stderr and exit code 2."""
    return int(args.func(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m fairwatch.intervention pipeline …``."""
    parser = argparse.ArgumentParser(prog="python -m fairwatch.intervention")
    sub = parser.add_subparsers(dest="command", required=True)
    add_pipeline_parser(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return dispatch(args)
