"""The run's HTML summary: result, decisions, gates, candidates and plots on one page."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

__all__ = ["write_summary_html"]

_COLS = ("accuracy", "f1", "dp_ratio", "eo_gap", "eop_gap", "ece", "max_group_ece", "worst_accuracy_deviation")


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def write_summary_html(out: Path, record: dict[str, Any]) -> Path:
    """Write ``summary.html`` in the run folder (images referenced relatively)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>fairwatch pipeline run {e(record['run_id'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 7px}"
        "th{background:#f3f3f3}.pass{color:#1a7f37}.fail{color:#cf222e}img{max-width:100%;border:1px solid #ddd}"
        "</style></head><body>",
        f"<h1>Pipeline run {e(record['run_id'])}: <span class='{'pass' if record['result'] == 'passed' else 'fail'}'>"
        f"{e(record['result'])}</span></h1>",
        f"<p>Model <b>{e(str(record.get('model')))}</b>; {record['data']['rows']} rows; protected "
        f"{e(', '.join(record['data']['protected']))} (primary <b>{e(record['data']['primary_attribute'])}</b>); "
        f"outcome <b>{e(record['data']['outcome'])}</b>; {record['iteration_count']} iteration(s).</p>",
    ]
    if record.get("recommended"):
        parts.append(f"<p class='pass'><b>Recommended</b> (passes every gate, least accuracy loss): "
                     f"{e(record['recommended'])}</p>")  # fmt: skip
    if record.get("escalation"):
        parts.append(f"<p class='fail'><b>Escalation</b>: {e(str(record['escalation'].get('reason')))}; "
                     f"best trade-off shown: {e(record['final']['name'])}</p>")  # fmt: skip
    docs = record.get("documents") or {}
    links = [("remediation_plan.html", f"Remediation plan {docs.get('plan_id', '')}"),
             ("investigation.html", f"Drift investigation {docs.get('investigation_id', '')}"),
             ("run.json", "run log (JSON)")]  # fmt: skip
    parts.append("<p>" + " · ".join(f"<a href='{h}'>{e(t)}</a>" for h, t in links if (out / h).exists()) + "</p>")
    parts.append("<h2>Candidates (test split)</h2><table><tr><th>name</th><th>stage</th>"
                 + "".join(f"<th>{c}</th>" for c in _COLS) + "</tr>")  # fmt: skip
    front = set(record["evaluation"]["pareto"]["frontier"])
    for c in record["candidates"]:
        star = " ★" if c["name"] in front else ""
        parts.append(f"<tr><td>{e(c['name'])}{star}</td><td>{e(c['stage'])}</td>"
                     + "".join(f"<td>{_fmt(c['metrics'].get(k))}</td>" for k in _COLS) + "</tr>")  # fmt: skip
    parts.append("</table><p>★ on the Pareto frontier.</p><h2>Iterations and gates</h2>")
    for it in record["iterations"]:
        parts.append(f"<h3>Iteration {it['iteration']} (from {e(it['start_stage'])}): {e(it.get('outcome', ''))}</h3>")
        if it.get("rollback"):
            parts.append(f"<p>Rollback → <b>{e(str(it['rollback'].get('destination')))}</b>: "
                         f"{e(str(it['rollback'].get('adjustment')))}</p>")  # fmt: skip
        for g in it["gates"]:
            parts.append(f"<p><b>{e(g['gate'])}</b>: <span class='{'pass' if g['passed'] else 'fail'}'>"
                         f"{'passed' if g['passed'] else 'failed'}</span></p><table><tr><th>check</th><th>value</th>"
                         "<th>criterion</th><th></th></tr>")  # fmt: skip
            for ch in g["checks"]:
                parts.append(f"<tr><td>{e(ch['name'])}</td><td>{_fmt(ch['value'])}</td><td>{e(ch['op'])} "
                             f"{_fmt(ch['threshold'])}</td><td>{'✔' if ch['passed'] else '✘'}</td></tr>")  # fmt: skip
            parts.append("</table>")
    parts.append("<h2>Decisions</h2><ul>")
    for ev in record["events"]:
        if ev["kind"] == "decision":
            parts.append(f"<li><b>{e(ev['point'])}</b> → {e(str(ev['outcome']))}</li>")
    parts.append("</ul><h2>Plots</h2>")
    for png in sorted(out.rglob("*.png")):
        rel = png.relative_to(out).as_posix()
        parts.append(f"<h3>{e(rel)}</h3><img src='{e(rel)}' alt='{e(rel)}'>")
    timings = record.get("timings") or {}
    if timings:
        parts.append("<h2>Timings</h2><table><tr><th>stage</th><th>wall s</th><th>peak RSS MiB</th></tr>")
        for k, v in timings.items():
            parts.append(
                f"<tr><td>{e(k)}</td><td>{_fmt(v['wall_seconds'])}</td><td>{_fmt(v['peak_rss_mib'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    path = out / "summary.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
