"""Drift Investigation Report and Fairness Drift Remediation Plan (Markdown + HTML).

The plan is ``templates/remediation_plan.md`` (package data; it mirrors the shared
``fairness-drift-remediation-plan.md`` section by section, one ``templates/intervention.md``
block per intervention) filled with ``string.Template``; every number comes from the run
record (``run.json``) or the investigation, formatted
with three decimals so a reader — or a test — can find it in the JSON. Owners are
roles and teams, never people. IDs are ``FAF-yyyy-mm-NNN``, allocated sequentially per
month by creating a marker file exclusively (safe across concurrent runs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from markdown_it import MarkdownIt

from .artifacts import write_json
from .gates import target_metric
from .investigation import monitored_numbers

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


def _monitored_lines(m: Mapping[str, Any] | None) -> list[str]:
    """The incident as the monitor measured it (metric, groups, windows, value, evidence)."""
    if not m:
        return []
    ci = m.get("ci")
    return ["## What the monitor measured", "",
            "| Incident | Metric | Attribute | Groups | Tier | Value (CI) | Windows | Evidence |",
            "|---|---|---|---|---|---|---|---|",
            f"| {m.get('id') or 'n/a'} | `{m.get('metric')}` | `{m.get('attribute')}` | "
            f"{', '.join(m.get('groups') or []) or 'all'} | {m.get('tier', 'n/a')} | {f3(m.get('value'))}"
            f"{f' [{f3(ci[0])}, {f3(ci[1])}]' if ci else ''} | {m.get('windows_text')} | "
            f"{m.get('evidence') or 'n/a'} |"]  # fmt: skip


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
    lines += ["", *_monitored_lines(inv.get("monitored")), "", "## For whom", ""]
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


def _template(name: str) -> Template:
    """A plan template shipped as package data (``intervention/templates/``)."""
    return Template(resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8"))


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


def _loss(base: Mapping[str, Any], m: Mapping[str, Any]) -> float | None:
    return (
        None
        if not base["accuracy"] or m.get("accuracy") is None
        else (base["accuracy"] - m["accuracy"]) / base["accuracy"]
    )


def _bias_source(key: str, causal: Mapping[str, Any]) -> str:
    return {"disparate_impact_remover": "biased mediators (" + ", ".join(causal.get("biased_mediators", [])) + ")",
            "reweighing": "label imbalance between groups in the training data",
            "constrained_lr": "model behaviour: proxies (" + (", ".join(causal.get("proxies", [])) or "none") +
                              ") and group-correlated decision boundary",
            "reductions": "model behaviour: group-correlated errors under the chosen constraint",
            "calibration": "group-dependent miscalibration of scores",
            "thresholds": "uniform threshold over groups with different base rates"}[key]  # fmt: skip


def _intervention_blocks(record: Mapping[str, Any], date: datetime) -> tuple[list[str], list[str]]:
    base = record["baseline"]["metrics"]
    causal = record.get("causal") or {}
    attr = record["data"]["primary_attribute"]
    blocks, toc = [], []
    start = date + timedelta(days=7)
    tpl = _template("intervention.md")
    for i, iv in enumerate(_interventions(record), 1):
        c, m = iv["candidate"], iv["candidate"]["metrics"]
        name, days = _TECHNIQUES[iv["key"]]
        done = start + timedelta(days=days)
        loss = _loss(base, m)
        srs = ", ".join(f"{k} {f3(base['selection_rate_by_group'].get(k))} → {f3(v)}"
                        for k, v in m["selection_rate_by_group"].items())  # fmt: skip
        blocks.append(tpl.substitute(
            index=i, name=name, detail=iv["detail"], candidate=c["name"], run_id=record["run_id"],
            bias=_bias_source(iv["key"], causal), base_dp=f3(base["dp_ratio"]), dp=f3(m["dp_ratio"]),
            base_eo=f3(base["eo_gap"]), eo=f3(m["eo_gap"]), base_eop=f3(base["eop_gap"]), eop=f3(m["eop_gap"]),
            base_ece=f3(base["max_group_ece"]), ece=f3(m["max_group_ece"]), base_acc=f3(base["accuracy"]),
            acc=f3(m["accuracy"]), acc_change=pct(-loss if loss is not None else None), base_f1=f3(base["f1"]),
            f1=f3(m["f1"]), base_sr=f3(base["selection_rate"]), sr=f3(m["selection_rate"]), attribute=attr,
            sr_by_group=srs, model_path=c.get("model_path"), days=days, done=f"{done:%Y-%m-%d}",
        ).rstrip())  # fmt: skip
        slug = re.sub(r"[^a-z0-9 -]", "", f"intervention {i} {name}".lower()).replace(" ", "-")
        toc.append(f"    - [Intervention {i}: {name}](#{slug})")
        start = done
    return blocks, toc


def _tradeoff_table(record: Mapping[str, Any]) -> list[str]:
    esc = record.get("escalation") or {}
    rows = esc.get("tradeoffs") or []
    lines = ["| Candidate | Accuracy (loss) | F1 | DP ratio | EO gap | Worst-group ECE | Target met | Failed checks |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        fails = ", ".join(f"`{x}`" for x in r["failed_checks"]) or (
            "no intervention" if r["stage"] == "baseline" else
            "none (passed its gate; the search went on)" if not r.get("final_validated") else "none")  # fmt: skip
        lines.append(f"| `{r['name']}` | {f3(r['accuracy'])} ({pct(-(r['accuracy_loss'] or 0))}) | {f3(r['f1'])} | "
                     f"{f3(r['dp_ratio'])} | {f3(r['eo_gap'])} | {f3(r['max_group_ece'])} | "
                     f"{'yes' if r['target_met'] else 'no'} | {fails} |")  # fmt: skip
    return lines


def _problem_summary(record: Mapping[str, Any], investigation: Mapping[str, Any] | None,
                     investigation_id: str | None, monitored: Mapping[str, Any] | None) -> str:  # fmt: skip
    base = record["baseline"]["metrics"]
    attr = record["data"]["primary_attribute"]
    parts = []
    if investigation is not None:
        mv = investigation["metric_value"]
        who = ", ".join(investigation["most_affected_groups"]) or "no single group"
        causes = "; ".join(f"`{r['feature']}` shifted for {r['group']} (statistic {f3(r['statistic'])})"
                           for r in investigation["shifted_features"][:3]) or "no significant shift"  # fmt: skip
        parts.append(
            f"`{investigation['metric']}` over `{investigation['attribute']}` moved from {f3(mv['baseline'])} to "
            f"{f3(mv['current'])} (investigation {investigation_id}), since {investigation['since'] or 'n/a'}. "
            f"Most affected: {who}. Root cause(s): {causes}; the selection-rate change of the most affected "
            f"group is driven by {investigation['primary_driver'] or 'undetermined factors'}.")  # fmt: skip
    elif monitored is None:
        parts.append("No drift investigation is attached: the run was started without an incident.")
    if monitored is not None:
        ci = monitored.get("ci")
        parts.append(
            f"The monitor raised incident {monitored.get('id') or 'n/a'} at tier {monitored.get('tier', 'n/a')}: "
            f"`{monitored.get('metric')}` over `{monitored.get('attribute')}` = {f3(monitored.get('value'))}"
            f"{f' (CI {f3(ci[0])} … {f3(ci[1])})' if ci else ''} in windows {monitored.get('windows_text')}"
            f"{'; groups ' + ', '.join(monitored['groups']) if monitored.get('groups') else ''}; evidence: "
            f"{monitored.get('evidence') or 'n/a'}.")  # fmt: skip
    parts.append(
        f"On the held-out test split ({record['data']['split']['test']} rows) the current, fairness-unaware "
        f"model has demographic parity ratio {f3(base['dp_ratio'])} for `{attr}` (lowest disparate impact "
        f"{f3(base['min_disparate_impact'])}), equalized odds gap {f3(base['eo_gap'])}, ECE {f3(base['ece'])} "
        f"(worst group {f3(base['max_group_ece'])}) and accuracy {f3(base['accuracy'])}.")  # fmt: skip
    causal = record.get("causal") or {}
    if causal:
        src = ("approved by domain experts" if causal.get("expert_approved") else
               f"{causal.get('dag_source', 'stated')}, **not approved by domain experts**")  # fmt: skip
        parts.append(
            f"Causal analysis (DAG {src}): mediators {', '.join(causal.get('mediators', [])) or 'none'}; proxies "
            f"{', '.join(causal.get('proxies', [])) or 'none'}; biased mediators "
            f"{', '.join(causal.get('biased_mediators', [])) or 'none'}; recommended strategy "
            f"**{causal.get('recommendation', {}).get('strategy', 'n/a')}**.")  # fmt: skip
    return "\n\n".join(parts)


def _goals(record: Mapping[str, Any]) -> str:
    cfg, base = record["config"], record["baseline"]["metrics"]
    g, attr, target = cfg["gates"], record["data"]["primary_attribute"], cfg["target_fairness"]
    key = target_metric(target)[0]
    first = (f"- Demographic parity ratio for `{attr}` ≥ {f3(g['dp_ratio_min'])} (now {f3(base['dp_ratio'])}); "
             f"every group's disparate impact within [0.800, 1.250]." if target == "demographic_parity" else
             f"- {target.replace('_', ' ')} gap for `{attr}` < {f3(g['eo_gap_max'])} "
             f"(now {f3(base[key])}).")  # fmt: skip
    return "\n".join([
        first,
        f"- Expected calibration error < {f3(g['ece_overall_max'])} overall and < {f3(g['ece_group_max'])} for "
        f"every group (now {f3(base['ece'])} / {f3(base['max_group_ece'])}).",
        f"- Every intersectional group within {f3(g['intersectional_max_deviation'])} of the average accuracy.",
        f"- Accuracy within {pct(-g['final_max_accuracy_loss'])} of the baseline {f3(base['accuracy'])}.",
    ])  # fmt: skip


def _interventions_section(record: Mapping[str, Any], date: datetime) -> tuple[str, str]:
    blocks, toc = _intervention_blocks(record, date)
    esc = record.get("escalation")
    if esc:
        esc_lines = [
            "### Escalation", "",
            f"The pipeline escalated: {esc.get('reason')}. The interventions above are the best trade-off found "
            f"(`{esc.get('best_tradeoff')}`), not a validated remedy. Best trade-offs (Pareto frontier of accuracy "
            f"and the fairness target over every candidate evaluated, test split):", "",
            *_tradeoff_table(record), "",
            "Options for the executive decision: " + "; ".join(esc.get("options", [])) + ".",
        ]  # fmt: skip
        if not blocks:
            blocks.append("### Intervention 1: Executive decision on the fairness–utility trade-off\n\n"
                          "**Description**: no candidate passed the validation gates; see Escalation.")  # fmt: skip
            toc.append("    - [Intervention 1: Executive decision on the fairness–utility trade-off]"
                       "(#intervention-1-executive-decision-on-the-fairnessutility-trade-off)")  # fmt: skip
        blocks.append("\n".join(esc_lines))
    return "\n\n".join(blocks), "\n".join(toc)


def _integrity(record: Mapping[str, Any]) -> str:
    by = {c["name"]: c for c in record["candidates"]}
    pre = [by[n] for n in record.get("chain") or [] if n in by and by[n]["stage"] == "preprocess"]
    rule = ("KS p > 0.05, no new missing values and an unchanged outlier rate on every non-protected feature "
            "other than those being repaired; the repaired features' distributions move on purpose, so their "
            "change is reported here, not treated as corruption")  # fmt: skip
    if not pre:
        return f"no pre-processing in the proposed chain (the gate's rule: {rule})."
    g = next((x for x in pre[0]["gates"] if x["gate"] == "preprocess_validation"), {"checks": []})
    ks = next((c for c in g["checks"] if c["name"] == "ks_min_p_value"), None)
    changed = pre[0]["params"].get("features") or []
    moved = pre[0]["params"].get("repaired_features_change") or {}
    named = ", ".join(f"`{f}`" + (f" (KS p {f3(moved[f]['p_value'])})" if f in moved else "") for f in changed)
    return (
        f"{rule}. Lowest KS p over the checked features: {f3(ks['value'] if ks else None)}; repaired "
        f"feature(s): {named or 'none (reweighing changes weights, not values)'} "
        f"(see `preprocess/preprocess_report_it{pre[0]['iteration']}.json`, `repaired_features_change`)."
    )


def _small_groups(record: Mapping[str, Any]) -> str:
    small = record["data"].get("small_groups") or {}
    n = record["data"].get("min_group_size", record["config"].get("min_group_size"))
    listed = [f"`{a}`={g} (n={k})" for a, gs in small.items() for g, k in gs.items()]
    if not listed:
        return f"every group has at least {n} test rows; all enter the ratios."
    return (
        f"groups under `min_group_size` = {n} test rows — {', '.join(listed)} — are reported but left out "
        f"of every ratio, gap and worst-group figure in this plan."
    )


def render_plan(
    record: Mapping[str, Any],
    *,
    plan_id: str,
    assessment_id: str,
    investigation: Mapping[str, Any] | None,
    investigation_id: str | None,
    date: datetime,
    incident: Mapping[str, Any] | None = None,
) -> str:
    """The Fairness Drift Remediation Plan in Markdown: ``templates/remediation_plan.md``
    filled from the run record (``run.json``) and the investigation."""
    cfg = record["config"]
    g = cfg["gates"]
    base = record["baseline"]["metrics"]
    final = record["final"]["metrics"]
    monitored = (investigation or {}).get("monitored") or (monitored_numbers(incident) if incident else None)
    key = target_metric(cfg["target_fairness"])[0]
    acc_loss = _loss(base, final)
    causal = record.get("causal") or {}
    draft = not causal.get("expert_approved", False)
    interventions, toc = _interventions_section(record, date)
    per = record.get("iterations_per_component") or {}
    phases = [("Phase 1: Design/Prep", "review investigation and pipeline run, approve targets"
               + ("; domain experts review the proposed causal DAG" if draft else ""), "approved plan", 5,
               "ML engineering"),
              ("Phase 2: Development", "re-run pipeline on latest data, package model version", "model artifact + "
               "pipeline report", 12, "ML engineering"),
              ("Phase 3: Testing", "offline validation gates, canary on 10 % of traffic", "validation report", 19,
               "QA / fairness review"),
              ("Phase 4: Deployment", "full rollout behind the feature flag, monitoring", "deployed version", 26,
               "MLOps")]  # fmt: skip
    split = record["data"]["split"]
    role = "recommended" if record["result"] != "escalated" else "best trade-off"
    values = {
        "plan_id": plan_id, "draft_marker": " (DRAFT)" if draft else "", "toc_interventions": toc,
        "system": record.get("model") or cfg.get("model_name") or "model", "assessment_id": assessment_id,
        "investigation_id": investigation_id or "none — run started without an incident",
        "date": f"{date:%Y-%m-%d}", "run_id": record["run_id"], "result": record["result"],
        "attempts": (f"{per.get('preprocess', 0)} pre-processing, {per.get('inprocess', 0)} in-processing and up to "
                     f"{per.get('postprocess', 0)} post-processing iteration(s) per source model; "
                     f"{len(record['candidates'])} candidates evaluated"),
        "status": ("**draft** — the causal DAG was " + str(causal.get("dag_source", "not approved")) +
                   " and awaits domain-expert review; nothing is deployed automatically" if draft else
                   ("ready for stakeholder review" if record["result"] == "passed" else
                    "escalated — executive decision required")),
        "problem_summary": _problem_summary(record, investigation, investigation_id, monitored),
        "goals": _goals(record), "interventions": interventions,
        "phases": "\n".join(f"| {ph} | {act} | {deliv} | {date + timedelta(days=d):%Y-%m-%d} | {owner} |"
                            for ph, act, deliv, d, owner in phases),
        "expert_row": "| Domain Expert | Domain expert panel | Review and approve the causal DAG |\n" if draft else "",
        "offline_testing": (f"held-out test split of {split['test']} rows (train {split['train']}, validation "
                            f"{split['validation']}); {role} candidate `{record['final']['name']}`."),
        "fairness_metrics": (f"demographic parity ratio {f3(final['dp_ratio'])}, equalized odds gap "
                             f"{f3(final['eo_gap'])}, lowest disparate impact {f3(final['min_disparate_impact'])}, "
                             f"intersectional minimum DP ratio {f3(final['intersectional_min_dp_ratio'])}, worst "
                             f"intersectional accuracy deviation {f3(final['worst_accuracy_deviation'])}."),
        "performance_metrics": (f"accuracy {f3(final['accuracy'])} (baseline {f3(base['accuracy'])}, "
                                f"{pct(-acc_loss if acc_loss is not None else None)}), F1 {f3(final['f1'])}, "
                                f"ECE {f3(final['ece'])} (worst group {f3(final['max_group_ece'])})."),
        "integrity": _integrity(record), "small_groups": _small_groups(record),
        "acceptance": (f"the playbook gates — target `{key}` "
                       f"{'≥ ' + f3(g['dp_ratio_min']) if key == 'dp_ratio' else '< ' + f3(g['eo_gap_max'])}, ECE < "
                       f"{f3(g['ece_overall_max'])} overall and < {f3(g['ece_group_max'])} per group, accuracy loss ≤ "
                       f"{pct(g['final_max_accuracy_loss'])}, intersectional deviation ≤ "
                       f"{f3(g['intersectional_max_deviation'])}; this run: **{record['result']}**."),
        "ece_group_max": f3(g["ece_group_max"]), "dp_ratio_min": f3(g["dp_ratio_min"]),
        "attribute": record["data"]["primary_attribute"], "baseline_accuracy": f3(base["accuracy"]),
        "communication_extra": ("\n- The executive sponsor receives the trade-off table of the escalation with this "
                                "plan." if record.get("escalation") else ""),
        "approval_note": ("**Draft.** The causal DAG behind this plan was " + str(causal.get("dag_source")) +
                          " and is not approved by domain experts; it awaits expert review. Nothing is deployed "
                          "before the domain expert row below is signed." if draft else
                          "The causal DAG was approved by domain experts; the signatures below approve the "
                          "deployment of the recommended candidate."),
        "approval_expert_row": "| Domain Expert (causal DAG review) | pending | pending | pending |" if draft else "",
    }  # fmt: skip
    return _template("remediation_plan.md").substitute(values).rstrip() + "\n"


def write_investigation_and_plan(out: Path, record: dict[str, Any], cfg: Any, *,
                                 now: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """Write ``investigation.{json,md,html}`` (if decisions are given) and
    ``remediation_plan.{md,html}``; returns the IDs and paths."""
    from .data import load_table
    from .investigation import investigate

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
                     investigation_id=inv_id, date=now, incident=cfg.incident)  # fmt: skip
    (out / "remediation_plan.md").write_text(md, encoding="utf-8")
    (out / "remediation_plan.html").write_text(markdown_to_html(md, title=f"Remediation Plan {plan_id}"),
                                               encoding="utf-8")  # fmt: skip
    docs["plan_id"] = plan_id
    return docs
