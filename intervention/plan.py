"""Drift Investigation Report and Fairness Drift Remediation Plan (Markdown + HTML).

The plan follows ``templates/fairness-drift-remediation-plan.md`` section by section;
every number comes from the run record (``run.json``) or the investigation, formatted
with three decimals so a reader — or a test — can find it in the JSON. Owners are
roles and teams, never people. IDs are ``FAF-yyyy-mm-NNN``, allocated sequentially per
month by creating a marker file exclusively (safe across concurrent runs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

__all__ = [
    "PLAN_SECTIONS",
    "allocate_id",
    "render_investigation",
    "render_plan",
    "markdown_to_html",
    "write_investigation_and_plan",
]

PLAN_SECTIONS = (
    "Assessment Information",
    "Problem Summary",
    "Remediation Goals",
    "Proposed Intervention(s)",
    "Implementation Plan",
    "Phases and Milestones",
    "Responsibilities",
    "Validation Strategy",
    "Pre-Deployment Validation",
    "Post-Deployment Validation",
    "Rollback Plan",
    "Rollback Criteria",
    "Rollback Procedure",
    "Rollback Owner",
    "Communication Plan",
    "Approval",
)

_TECHNIQUES = {
    "disparate_impact_remover": ("Disparate impact removal (Feldman et al. 2015)", 10),
    "reweighing": ("Reweighing (Kamiran & Calders 2012)", 7),
    "constrained_lr": ("Fairness-constrained logistic regression (Zafar et al. 2017)", 21),
    "reductions": ("Exponentiated-gradient reductions (Agarwal et al. 2018)", 21),
    "calibration": ("Group-specific calibration (Pleiss et al. 2017)", 7),
    "thresholds": ("Group threshold optimization (Hardt et al. 2016)", 7),
}


def allocate_id(registry: str | Path, when: datetime) -> str:
    """Next free ``FAF-yyyy-mm-NNN`` for ``when``'s month, reserved by an exclusive file.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> allocate_id(d, datetime(2026, 11, 3)), allocate_id(d, datetime(2026, 11, 9))
    ('FAF-2026-11-001', 'FAF-2026-11-002')
    """
    reg = Path(registry)
    reg.mkdir(parents=True, exist_ok=True)
    prefix = f"FAF-{when:%Y-%m}-"
    n = 1 + max((int(p.name[len(prefix) :]) for p in reg.glob(prefix + "[0-9][0-9][0-9]")), default=0)
    while True:
        ident = f"{prefix}{n:03d}"
        try:
            os.close(os.open(reg / ident, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return ident
        except FileExistsError:
            n += 1


def f3(v: Any) -> str:
    """A number as the plan prints it (three decimals; ``n/a`` for None).

    >>> f3(0.81234), f3(None), f3(3)
    ('0.812', 'n/a', '3.000')
    """
    return "n/a" if v is None else f"{float(v):.3f}"


def pct(v: Any) -> str:
    """A fraction as a signed percentage with one decimal.

    >>> pct(0.0234), pct(-0.1)
    ('+2.3 %', '-10.0 %')
    """
    return "n/a" if v is None else f"{100 * float(v):+.1f} %"


def markdown_to_html(md: str, *, title: str) -> str:
    """Standalone HTML page of a Markdown document (CommonMark + tables)."""
    body = MarkdownIt("commonmark").enable("table").render(md)
    css = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;line-height:1.45;color:#222}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
           "th{background:#f3f3f3}code{background:#f5f5f5;padding:1px 3px}h1,h2,h3{color:#1a3d6d}")  # fmt: skip
    esc = title.replace("&", "&amp;").replace("<", "&lt;")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc}</title>"
            f"<style>{css}</style></head><body>\n{body}</body></html>\n")  # fmt: skip


# ---------------------------------------------------------------------------- investigation


def render_investigation(inv: Mapping[str, Any], ident: str, date: datetime) -> str:
    """The Drift Investigation Report in Markdown."""
    mv = inv["metric_value"]
    lines = [
        f"# Drift Investigation Report {ident}",
        "",
        f"- **Investigation ID**: {ident}",
        f"- **Model**: {inv.get('model') or 'unnamed model'}",
        f"- **Incident**: {inv['incident'].get('id', 'manual investigation')} "
        f"(tier {inv['incident'].get('tier', 'n/a')})",
        f"- **Date**: {date:%Y-%m-%d}",
        f"- **Metric**: `{inv['metric']}` over attribute `{inv['attribute']}`",
        f"- **Windows**: baseline {inv['windows']['baseline'][0]} … {inv['windows']['baseline'][1]} "
        f"({inv['decisions']['baseline']} labeled decisions); current {inv['windows']['current'][0]} … "
        f"{inv['windows']['current'][1]} ({inv['decisions']['current']} labeled decisions)",
        "",
        "## What moved",
        "",
        f"`{inv['metric']}` went from {f3(mv['baseline'])} to {f3(mv['current'])} (change {f3(mv['delta'])}).",
        "",
        "| Group | n (baseline / current) | Selection rate | TPR | FPR | Accuracy | ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    for grp, e in inv["groups"].items():

        def cell(k: str, e: Mapping[str, Any] = e) -> str:
            return f"{f3(e[k]['baseline'])} → {f3(e[k]['current'])}"

        lines.append(f"| {grp} | {e['n']['baseline']} / {e['n']['current']} | {cell('selection_rate')} | "
                     f"{cell('tpr')} | {cell('fpr')} | {cell('accuracy')} | {cell('ece')} |")  # fmt: skip
    lines += ["", "## For whom", ""]
    for grp in inv["most_affected_groups"]:
        e = inv["groups"][grp]
        lines.append(f"- **{grp}**: selection rate {f3(e['selection_rate']['baseline'])} → "
                     f"{f3(e['selection_rate']['current'])} (change {f3(e['selection_rate']['delta'])})")  # fmt: skip
    cp = inv["change_point"]
    lines += ["", "## Since when", ""]
    if inv["since"]:
        lines.append(f"The daily series of `{inv['metric']}` shifts on **{inv['since']}** (least-squares "
                     f"change point): mean {f3(cp['mean_before'])} before, {f3(cp['mean_after'])} after.")  # fmt: skip
    else:
        lines.append("The daily series is too short for a change point.")
    lines += ["", "## Which features shifted, for whom", ""]
    shifted = inv["shifted_features"]
    if shifted:
        lines += ["| Group | Feature | Test | Statistic | p-value | Mean change |", "|---|---|---|---|---|---|"]
        for r in shifted[:20]:
            lines.append(f"| {r['group']} | {r['feature']} | {r['test']} | {f3(r['statistic'])} | "
                         f"{r['p_value']:.2e} | {f3(r['mean_delta'])} |")  # fmt: skip
    else:
        lines.append("No feature distribution changed significantly in any group.")
    lines += ["", "## Label shift vs model behaviour", "",
              "| Group | Δ selection rate | Label shift part | Behaviour part |", "|---|---|---|---|"]  # fmt: skip
    for grp, e in inv["groups"].items():
        d = e["decomposition"]
        lines.append(f"| {grp} | {f3(d['total'])} | {f3(d['label_shift'])} | {f3(d['behaviour'])} |")
    lines += ["", f"**Primary driver**: {inv['primary_driver'] or 'undetermined'}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- plan


def _trade_off_table(record: Mapping[str, Any]) -> list[str]:
    """The best trade-offs found (Pareto table of run.json) for the executive decision."""
    rows = (record.get("trade_offs") or {}).get("table") or []
    if not rows:
        return []
    out = ["**Best trade-offs found** (test split; Pareto frontier of accuracy against the fairness target):", "",
           "| Candidate | Stage | DP ratio | EO gap | Worst-group ECE | Accuracy | F1 | Accuracy loss | "
           "Target met | Failed checks |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        out.append(f"| {r['name']} | {r['stage']} | {f3(r['dp_ratio'])} | {f3(r['eo_gap'])} | "
                   f"{f3(r['max_group_ece'])} | {f3(r['accuracy'])} | {f3(r['f1'])} | {pct(r['accuracy_loss'])} | "
                   f"{'yes' if r['target_met'] else 'no'} | {', '.join(r['failed_checks']) or 'none'} |")  # fmt: skip
    return [*out, ""]


def _integrity_note(record: Mapping[str, Any]) -> list[str]:
    """KS integrity as the playbook means it: repaired features are meant to change."""
    out = []
    for c in record["candidates"]:
        change = c["params"].get("repaired_feature_change") if c["stage"] == "preprocess" else None
        if not change:
            continue
        moved = ", ".join(f"{f} (KS p {f3(v.get('p_value'))})" for f, v in change.items())
        out.append(f"- `{c['name']}`: repaired features changed as intended: {moved}.")
    if not out:
        return []
    return ["**Data integrity**: the KS test checks that the distributions of the non-protected features other "
            "than those being repaired are preserved (p > 0.05); the repaired features' change is reported here, "
            "not treated as corruption.", "", *out, ""]  # fmt: skip


def _interventions(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    by_name = {c["name"]: c for c in record["candidates"]}
    out = []
    for name in record.get("chain") or []:
        c = by_name.get(name)
        if c is None:
            continue
        p = c["params"]
        if c["stage"] == "preprocess":
            key = p["technique"]
            detail = (f"repair level {f3(p.get('repair_level'))} on {', '.join(p.get('features', []))}"
                      if key == "disparate_impact_remover" else "instance weights P(g)·P(y)/P(g,y)")  # fmt: skip
            out.append({"key": key, "candidate": c, "detail": detail})
        elif c["stage"] == "inprocess":
            key = p["technique"]
            detail = (
                f"{p['constraint']} constraint, constraint weight {f3(p.get('constraint_weight'))}"
                if key == "constrained_lr"
                else f"{p['constraint']} constraint around {p.get('base_estimator')}, eps {f3(p.get('eps'))}"
            )
            out.append({"key": key, "candidate": c, "detail": detail})
        elif c["stage"] == "postprocess":
            for s in p.get("steps", []):
                key = "calibration" if s.startswith("group_") else "thresholds"
                out.append({"key": key, "candidate": c, "detail": s.replace("_", " ")})
    return out


def render_plan(
    record: Mapping[str, Any],
    *,
    plan_id: str,
    assessment_id: str,
    investigation: Mapping[str, Any] | None,
    investigation_id: str | None,
    date: datetime,
) -> str:
    """The Fairness Drift Remediation Plan in Markdown, filled from measured numbers."""
    cfg = record["config"]
    g = cfg["gates"]
    base = record["baseline"]["metrics"]
    final = record["final"]["metrics"]
    attr = record["data"]["primary_attribute"]
    target = cfg["target_fairness"]
    system = record.get("model") or cfg.get("model_name") or "model"
    runs = record["run_id"]
    acc_loss = None if not base["accuracy"] else (base["accuracy"] - final["accuracy"]) / base["accuracy"]
    lines = [
        f"# Fairness Drift Remediation Plan {plan_id}",
        "",
        "## Table of Contents",
        "",
        *[f"- [{s}](#{s.lower().replace(' ', '-').replace('(', '').replace(')', '')})" for s in
          ("Assessment Information", "Problem Summary", "Remediation Goals", "Proposed Intervention(s)",
           "Implementation Plan", "Validation Strategy", "Rollback Plan", "Communication Plan", "Approval")],
        "",
        "## Assessment Information",
        "",
        f"- **System Name**: {system}",
        f"- **Assessment ID**: {assessment_id}",
        f"- **Remediation Plan ID**: {plan_id}",
        f"- **Related Investigation ID**: {investigation_id or 'none — run started without an incident'}",
        f"- **Date**: {date:%Y-%m-%d}",
        "- **Plan Owner**: ML engineering on-call owner of the model (fairwatch intervention pipeline)",
        f"- **Pipeline run**: `{runs}`, result **{record['result']}** after {record['iteration_count']} "
        f"iteration(s)",
        "",
        "## Problem Summary",
        "",
    ]  # fmt: skip
    if investigation is not None:
        mv = investigation["metric_value"]
        who = ", ".join(investigation["most_affected_groups"]) or "no single group"
        shifted = investigation["shifted_features"][:3]
        causes = "; ".join(f"`{r['feature']}` shifted for {r['group']} (statistic {f3(r['statistic'])})"
                           for r in shifted) or "no significant feature shift"  # fmt: skip
        lines += [
            f"`{investigation['metric']}` over `{investigation['attribute']}` moved from {f3(mv['baseline'])} to "
            f"{f3(mv['current'])} (investigation {investigation_id}), since {investigation['since'] or 'n/a'}. "
            f"Most affected: {who}. Root cause(s): {causes}; the selection-rate change of the most affected "
            f"group is driven by {investigation['primary_driver'] or 'undetermined factors'}.",
            "",
        ]  # fmt: skip
    lines += [
        f"On the held-out test split ({record['data']['split']['test']} rows) the current, fairness-unaware "
        f"model has demographic parity ratio {f3(base['dp_ratio'])} for `{attr}` (lowest disparate impact "
        f"{f3(base['min_disparate_impact'])}), equalized odds gap {f3(base['eo_gap'])}, ECE {f3(base['ece'])} "
        f"(worst group {f3(base['max_group_ece'])}) and accuracy {f3(base['accuracy'])}.",
    ]  # fmt: skip
    causal = record.get("causal") or {}
    if causal:
        lines += ["",
                  f"Causal analysis: mediators {', '.join(causal.get('mediators', [])) or 'none'}; proxies "
                  f"{', '.join(causal.get('proxies', [])) or 'none'}; biased mediators "
                  f"{', '.join(causal.get('biased_mediators', [])) or 'none'}; recommended strategy "
                  f"**{causal.get('recommendation', {}).get('strategy', 'n/a')}**."]  # fmt: skip
    key = {"demographic_parity": "dp_ratio", "equalized_odds": "eo_gap", "equal_opportunity": "eop_gap"}[target]
    lines += [
        "",
        "## Remediation Goals",
        "",
        f"- Demographic parity ratio for `{attr}` ≥ {f3(g['dp_ratio_min'])} (now {f3(base['dp_ratio'])}); "
        f"every group's disparate impact within [0.800, 1.250]." if target == "demographic_parity" else
        f"- {target.replace('_', ' ')} gap for `{attr}` < {f3(g['eo_gap_max'])} (now {f3(base[key])}).",
        f"- Expected calibration error < {f3(g['ece_overall_max'])} overall and < {f3(g['ece_group_max'])} for "
        f"every group (now {f3(base['ece'])} / {f3(base['max_group_ece'])}).",
        f"- Every intersectional group within {f3(g['intersectional_max_deviation'])} of the average accuracy.",
        f"- Accuracy within {pct(-g['final_max_accuracy_loss'])} of the baseline {f3(base['accuracy'])}.",
        "",
        "## Proposed Intervention(s)",
        "",
    ]  # fmt: skip
    ivs = _interventions(record)
    start = date + timedelta(days=7)
    if not ivs:
        lines += ["### Intervention 1: Executive decision on the fairness–utility trade-off", "",
                  "**Description**: no candidate passed the validation gates; see Escalation below.", ""]  # fmt: skip
    for i, iv in enumerate(ivs, 1):
        c = iv["candidate"]
        m = c["metrics"]
        name, days = _TECHNIQUES[iv["key"]]
        loss = None if not base["accuracy"] else (base["accuracy"] - m["accuracy"]) / base["accuracy"]
        done = start + timedelta(days=days)
        srs = ", ".join(f"{k} {f3(base['selection_rate_by_group'].get(k))} → {f3(v)}"
                        for k, v in m["selection_rate_by_group"].items())  # fmt: skip
        bias = {"disparate_impact_remover": "biased mediators (" + ", ".join(causal.get("biased_mediators", [])) + ")",
                "reweighing": "label imbalance between groups in the training data",
                "constrained_lr": "model behaviour: proxies (" + ", ".join(causal.get("proxies", [])) +
                                  ") and group-correlated decision boundary",
                "reductions": "model behaviour: group-correlated errors under the chosen constraint",
                "calibration": "group-dependent miscalibration of scores",
                "thresholds": "uniform threshold over groups with different base rates"}[iv["key"]]  # fmt: skip
        lines += [
            f"### Intervention {i}: {name}",
            "",
            f"**Description**: {name}, {iv['detail']}; candidate `{c['name']}` of pipeline run `{runs}`.",
            "",
            f"**Targeted Bias Source(s)**: {bias}",
            "",
            "**Expected Impact**:",
            "",
            f"- **On Fairness Metrics**: demographic parity ratio {f3(base['dp_ratio'])} → {f3(m['dp_ratio'])}; "
            f"equalized odds gap {f3(base['eo_gap'])} → {f3(m['eo_gap'])}; equal-opportunity gap "
            f"{f3(base['eop_gap'])} → {f3(m['eop_gap'])}; worst-group ECE {f3(base['max_group_ece'])} → "
            f"{f3(m['max_group_ece'])} (measured on the test split).",
            f"- **On Performance Metrics**: accuracy {f3(base['accuracy'])} → {f3(m['accuracy'])} "
            f"({pct(-loss if loss is not None else None)}); F1 {f3(base['f1'])} → {f3(m['f1'])}; offline batch "
            f"scoring only, no serving-latency change expected beyond one group lookup.",
            f"- **On Business Metrics**: overall approval rate {f3(base['selection_rate'])} → "
            f"{f3(m['selection_rate'])}; by `{attr}`: {srs}.",
            "",
            "**Implementation Details**:",
            "",
            f"- **Technical Steps**: re-run `fairwatch pipeline run --config pipeline.yaml` on the latest labeled "
            f"data; review `{runs}/summary.html`; register `{c.get('model_path')}` as a new model version; serve it "
            f"behind the feature flag as a canary.",
            f"- **Code/Configuration Changes**: pipeline configuration (`preprocess_technique`, "
            f"`inprocess_technique`, `constraint_weight`, `calibration`) as recorded in `{runs}/run.json`; the "
            f"model artifact `{c.get('model_path')}`; the flag variant for the new version.",
            "- **Resources Required**: ML engineering (1 engineer), MLOps (deployment), compliance review; "
            "CPU only.",
            "",
            "**Timeline**:",
            "",
            f"- **Estimated Duration**: {days} days",
            f"- **Target Completion Date**: {done:%Y-%m-%d}",
            "",
            "**Risk Assessment**:",
            "",
            f"- **Potential Negative Consequences**: accuracy change {pct(-loss if loss is not None else None)}; "
            f"approval rates move for every group (see business impact); the intervention may over-correct when "
            f"the population shifts again.",
            "- **Mitigation for Risks**: canary release with fairwatch monitoring of every metric above; automatic "
            "rollback through the feature flag on the criteria below.",
            "",
        ]  # fmt: skip
        start = done
    if record.get("escalation"):
        esc = record["escalation"]
        lines += ["### Escalation", "",
                  f"The pipeline escalated: {esc.get('reason')}. Options for the executive decision: "
                  + "; ".join(esc.get("options", ["revise the intervention strategy with domain experts"])) + ".",
                  ""]  # fmt: skip
        lines += _trade_off_table(record)
    lines += _integrity_note(record)
    d0 = date
    phases = [("Phase 1: Design/Prep", "review investigation and pipeline run, approve targets", "approved plan", 5,
               "ML engineering"),
              ("Phase 2: Development", "re-run pipeline on latest data, package model version", "model artifact + "
               "pipeline report", 12, "ML engineering"),
              ("Phase 3: Testing", "offline validation gates, canary on 10 % of traffic", "validation report", 19,
               "QA / fairness review"),
              ("Phase 4: Deployment", "full rollout behind the feature flag, monitoring", "deployed version", 26,
               "MLOps")]  # fmt: skip
    lines += ["## Implementation Plan", "", "### Phases and Milestones", "",
              "| Phase | Key Activities | Deliverable | Deadline | Owner |", "|---|---|---|---|---|"]  # fmt: skip
    for ph, act, deliv, days, owner in phases:
        lines.append(f"| {ph} | {act} | {deliv} | {d0 + timedelta(days=days):%Y-%m-%d} | {owner} |")
    lines += ["", "### Responsibilities", "", "| Role | Name/Team | Responsibility |", "|---|---|---|",
              "| Developer | ML engineering | Implement the intervention and re-run the pipeline |",
              "| QA Tester | Fairness review | Validate fairness and performance against the gates |",
              "| MLOps Engineer | Platform / MLOps | Deploy the version behind the flag, update monitoring |",
              "| Project Manager | Product owner | Oversee timeline, resources and stakeholder sign-off |",
              "| Compliance Officer | Compliance | Regulatory review of the trade-off |", ""]  # fmt: skip
    lines += [
        "## Validation Strategy",
        "",
        "### Pre-Deployment Validation",
        "",
        f"- **Offline Testing**: held-out test split of {record['data']['split']['test']} rows (train "
        f"{record['data']['split']['train']}, validation {record['data']['split']['validation']}); final "
        f"candidate `{record['final']['name']}`.",
        f"- **Fairness Metrics**: demographic parity ratio {f3(final['dp_ratio'])}, equalized odds gap "
        f"{f3(final['eo_gap'])}, lowest disparate impact {f3(final['min_disparate_impact'])}, intersectional "
        f"minimum DP ratio {f3(final['intersectional_min_dp_ratio'])}, worst intersectional accuracy deviation "
        f"{f3(final['worst_accuracy_deviation'])}.",
        f"- **Performance Metrics**: accuracy {f3(final['accuracy'])} (baseline {f3(base['accuracy'])}, "
        f"{pct(-acc_loss if acc_loss is not None else None)}), F1 {f3(final['f1'])}, ECE {f3(final['ece'])}.",
        f"- **Acceptance Criteria**: the playbook gates — target `{key}` "
        f"{'≥ ' + f3(g['dp_ratio_min']) if key == 'dp_ratio' else '< ' + f3(g['eo_gap_max'])}, ECE < "
        f"{f3(g['ece_overall_max'])} overall and < {f3(g['ece_group_max'])} per group, accuracy loss ≤ "
        f"{pct(g['final_max_accuracy_loss'])}, intersectional deviation ≤ {f3(g['intersectional_max_deviation'])}; "
        f"this run: **{record['result']}**.",
        "",
        "### Post-Deployment Validation",
        "",
        "- **A/B Testing or Canary Release**: canary on 10 % of traffic for 14 days, then 50 %, then 100 %, "
        "each step gated on the monitoring criteria below.",
        "- **Monitoring Plan**: fairwatch windows 1h/24h/7d; alerts on demographic parity ratio < 0.75, any "
        "disparate impact outside [0.80, 1.25], equalized odds gap > 0.12, group ECE > 0.08, accuracy 5 % "
        "below baseline.",
        f"- **Success Metrics**: `fairness_demographic_parity_ratio{{attribute=\"{attr}\"}}` ≥ "
        f"{f3(g['dp_ratio_min'])} and `fairness_expected_calibration_error` < {f3(g['ece_group_max'])} for 30 "
        f"consecutive days on matured labels.",
        "- **Validation Period**: 30 days after full rollout (plus the label-maturity delay).",
        "",
        "## Rollback Plan",
        "",
        "### Rollback Criteria",
        "",
        f"Roll back when, on the canary or after rollout: accuracy drops more than 5 % below "
        f"{f3(base['accuracy'])}; any group's disparate impact leaves [0.80, 1.25]; the demographic parity "
        f"ratio falls below 0.75; or the equalized odds gap exceeds 0.12.",
        "",
        "### Rollback Procedure",
        "",
        "1. **Detect**: fairwatch raises the tier-3 alert (automatic).",
        "2. **Assess**: the on-call engineer and ML lead confirm severity on the dashboard.",
        "3. **Decide**: the technical director approves (automatic for tier 3).",
        "4. **Execute**: switch the model feature flag back to the previous version (`fairwatch flags "
        "rollback`).",
        "5. **Verify**: confirm the decisions of the previous version restore the baseline metrics.",
        "6. **Communicate**: notify stakeholders and record the incident in the audit log.",
        "",
        "### Rollback Owner",
        "",
        "On-call ML engineer (executes), with the ML team lead as accountable owner.",
        "",
        "## Communication Plan",
        "",
        "- Weekly status to the product owner and compliance during implementation; this plan, the "
        "investigation report and the pipeline summary are shared at kickoff.",
        "- Gate results are posted after each phase; the canary result goes to product, compliance and "
        "executive sponsor before full rollout.",
        "- After the validation period, a closing report (metrics before/after) is filed with the monthly "
        "fairness audit export.",
        "",
        "---",
        "",
        "## Approval",
        "",
        "| Role | Name | Signature | Date |",
        "|---|---|---|---|",
        *[f"| {r} | pending | pending | pending |" for r in
          ("Plan Owner", "Technical Lead", "Fairness Assessment Lead", "System Owner/Product Manager",
           "Compliance Officer (if applicable)")],
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def write_investigation_and_plan(out: Path, record: dict[str, Any], cfg: Any, *,
                                 now: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """Write ``investigation.{json,md,html}`` (if decisions are given) and
    ``remediation_plan.{md,html}``; returns the IDs and paths."""
    from .data import load_table
    from .investigation import investigate
    from .pipeline import write_json

    now = now or datetime.now(UTC)
    registry = out.parent / ".faf-ids"
    assessment_id = allocate_id(registry, now)
    inv = inv_id = None
    docs: dict[str, Any] = {"assessment_id": assessment_id}
    if cfg.decisions is not None:
        incident = dict(cfg.incident or {})
        incident.setdefault("model", cfg.model_name)
        incident.setdefault("attribute", cfg.primary)
        inv = investigate(incident, load_table(cfg.decisions, field="decisions"), min_group_size=cfg.min_group_size)
        inv_id = assessment_id
        write_json(out / "investigation.json", {"id": inv_id, **inv})
        md = render_investigation(inv, inv_id, now)
        (out / "investigation.md").write_text(md, encoding="utf-8")
        (out / "investigation.html").write_text(markdown_to_html(md, title=f"Drift Investigation {inv_id}"),
                                                encoding="utf-8")  # fmt: skip
        docs["investigation_id"] = inv_id
    plan_id = allocate_id(registry, now)
    md = render_plan(record, plan_id=plan_id, assessment_id=assessment_id, investigation=inv,
                     investigation_id=inv_id, date=now)  # fmt: skip
    (out / "remediation_plan.md").write_text(md, encoding="utf-8")
    (out / "remediation_plan.html").write_text(markdown_to_html(md, title=f"Remediation Plan {plan_id}"),
                                               encoding="utf-8")  # fmt: skip
    docs["plan_id"] = plan_id
    return docs
