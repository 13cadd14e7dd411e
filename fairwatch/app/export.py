"""``fairwatch audit export``: the monthly audit report (docs/files.md, "Monthly export bundle").

From the persisted per-day counts (:mod:`fairwatch.monitor.daily`) it computes, with
:func:`fairwatch.monitor.metrics.attribute_metrics` — the function behind every live
gauge — the metrics of every day and of the whole month (the month's counts are
the exact sum of its days), and writes into ``--out``:

* ``report.html`` — plots per model and attribute (DP ratio, disparate impact,
  equalized-odds gap, ECE per day and group; rollbacks marked), incidents,
  rollbacks, remediation plans (copied from the pipeline run dir), the
  reconciliation of consumed events against Kafka offsets, the audit-log check;
* ``metrics.csv`` — period (day or month) × model × attribute × group × metric,
  with sample sizes and confidence intervals (Wilson / Katz / Newcombe);
* ``report.json`` — the same numbers, incidents, rollbacks, reconciliation, the
  audit log's head (seq, hash);
* ``plots/*.png``; ``plans/<run>/`` and ``runs/<run>/run.json`` of the month's pipeline
  runs (started this month, or with a plan or record written this month);
  ``audit/entries.jsonl``, the month's audit-log entries (the report's rows link by seq);
* ``manifest.sha256`` — SHA-256 of every other file (``sha256sum -c`` format).

The export is built in a temporary sibling directory and renamed into place,
so ``--out`` either holds a complete export or nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import html
import logging
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fairwatch.alerts.audit import INCIDENT_KINDS, ROLLBACK_EXECUTE, ROLLBACK_KINDS, TIER_CHANGE
from fairwatch.monitor.audit import iter_entries, verify
from fairwatch.monitor.daily import RECON_RESULTS, DailyStore, month_days
from fairwatch.monitor.metrics import AttributeMetrics, attribute_metrics
from fairwatch.monitor.stats import GroupCounts

__all__ = [
    "ExportSettings",
    "ExportResult",
    "export_month",
    "verify_export",
    "MONTH",
    "MSG_OUT_EXISTS",
    "NO_KAFKA",
    "day_axis",
]

log = logging.getLogger("fairwatch.export")

MONTH = "month"  # the ``period`` of month-level rows
#: the verdict when no message with an event time in the month was consumed from Kafka
NO_KAFKA = "not applicable (no message of the month was consumed from Kafka)"
MSG_OUT_EXISTS = "--out: {path!r} exists and is not empty; choose another directory"
MANIFEST = "manifest.sha256"
MONTH_ENTRIES = "audit/entries.jsonl"  # the month's audit-log entries, copied into the bundle
PIPELINE_KIND = "pipeline."
PIPELINE_START = "pipeline.start"
PLAN_FILES = ("remediation_plan.html", "remediation_plan.md")

GROUP_METRICS = (
    ("selection_rate", "selection_rate_ci", "wilson"),
    ("disparate_impact", "disparate_impact_ci", "katz"),
    ("true_positive_rate", None, ""),
    ("false_positive_rate", None, ""),
    ("accuracy", None, ""),
    ("expected_calibration_error", None, ""),
)
ATTRIBUTE_METRICS = (
    ("demographic_parity_ratio", "dp_ratio", "dp_ratio_ci", "katz"),
    ("demographic_parity_difference", "dp_difference", "dp_difference_ci", "newcombe"),
    ("equalized_odds_gap", "eo_gap", "eo_gap_ci", "newcombe"),
)
CSV_COLUMNS = (
    "period",
    "model",
    "attribute",
    "group",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "ci_method",
    "decisions",
    "labeled",
)


@dataclass(frozen=True)
class ExportSettings:
    """The metric settings of the live engine (same thresholds, same reference groups)."""

    min_decisions: int = 100
    min_labeled: int = 50
    confidence: float = 0.95
    reference_groups: Mapping[str, str] = field(default_factory=dict)
    #: the topic whose ``ok`` events must equal the decisions in the month's metrics
    decisions_topic: str = "fairness.decisions"


@dataclass(frozen=True)
class ExportResult:
    out: Path
    files: dict[str, str]  # relative path → sha256
    reconciliation_ok: bool | None  # None: nothing consumed from Kafka this month
    audit_ok: bool
    rows: int


def _metrics(counts: Mapping[str, GroupCounts], col: str, s: ExportSettings) -> AttributeMetrics:
    return attribute_metrics(
        counts,
        attribute=col,
        min_decisions=s.min_decisions,
        min_labeled=s.min_labeled,
        reference=s.reference_groups.get(col),
        confidence=s.confidence,
    )


def _csv_rows(period: str, model: str, am: AttributeMetrics) -> list[tuple]:
    rows = []
    n_dec = sum(g.decisions for g in am.groups)
    n_lab = sum(g.labeled for g in am.groups)
    for name, attr, ci_attr, method in ATTRIBUTE_METRICS:
        v, ci = getattr(am, attr), getattr(am, ci_attr)
        if v is not None:
            rows.append(
                (period, model, am.attribute, "", name, v, *(ci or (None, None)), method if ci else "", n_dec, n_lab)
            )
    for g in am.groups:
        for attr, ci_attr, method in GROUP_METRICS:
            v = getattr(g, attr)
            ci = getattr(g, ci_attr) if ci_attr else None
            if attr == "selection_rate" and not g.sufficient:
                v = None  # reported as sample sizes only, as on the live gauges
            if v is not None:
                rows.append(
                    (
                        period,
                        model,
                        am.attribute,
                        g.group,
                        attr,
                        v,
                        *(ci or (None, None)),
                        method if ci else "",
                        g.decisions,
                        g.labeled,
                    )
                )
    return rows


def _am_json(am: AttributeMetrics) -> dict[str, Any]:
    return {
        "reference": am.reference,
        "demographic_parity_ratio": am.dp_ratio,
        "demographic_parity_ratio_ci": am.dp_ratio_ci,
        "demographic_parity_difference": am.dp_difference,
        "demographic_parity_difference_ci": am.dp_difference_ci,
        "equalized_odds_gap": am.eo_gap,
        "equalized_odds_gap_ci": am.eo_gap_ci,
        "groups": {
            g.group: {
                "decisions": g.decisions,
                "labeled": g.labeled,
                "sufficient": g.sufficient,
                "sufficient_labeled": g.sufficient_labeled,
                "selection_rate": g.selection_rate,
                "selection_rate_ci": g.selection_rate_ci,
                "disparate_impact": g.disparate_impact,
                "disparate_impact_ci": g.disparate_impact_ci,
                "true_positive_rate": g.true_positive_rate,
                "false_positive_rate": g.false_positive_rate,
                "accuracy": g.accuracy,
                "expected_calibration_error": g.expected_calibration_error,
            }
            for g in am.groups
        },
    }


def month_metrics(
    store: DailyStore, month: str, settings: ExportSettings | None = None
) -> tuple[dict[tuple[str, str], AttributeMetrics], dict[tuple[str, str, str], AttributeMetrics]]:
    """``(model, attribute) → month metrics`` and ``(day, model, attribute) → day metrics``."""
    s = settings or ExportSettings()
    by_day: dict[tuple[str, str, str], dict[str, GroupCounts]] = defaultdict(dict)
    total: dict[tuple[str, str], dict[str, GroupCounts]] = defaultdict(dict)
    for (day, model, col, grp), c in sorted(store.counts(month).items()):
        by_day[(day, model, col)][grp] = c
        t = total[(model, col)]
        if grp in t:
            t[grp] += c
        else:
            t[grp] = c.copy()
    months = {k: _metrics(v, k[1], s) for k, v in sorted(total.items())}
    days = {k: _metrics(v, k[2], s) for k, v in sorted(by_day.items())}
    return months, days


def _in_month(ts: Any, month: str) -> bool:
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m") == month
    except (TypeError, ValueError, OverflowError, OSError):
        return False


def _reconcile(store: DailyStore, month: str) -> tuple[list[dict[str, Any]], bool | None]:
    """Per topic partition: the month's events (by event day, whenever consumed) against the
    offsets that carried them; ``None`` when no message of the month came through Kafka."""
    parts = []
    for (topic, part), r in sorted(store.reconciliation(month).items()):
        by_result = {res: 0 for res in RECON_RESULTS}
        reasons: dict[str, dict[str, int]] = defaultdict(dict)
        for (res, why), n in sorted(r["events"].items()):
            by_result[res] = by_result.get(res, 0) + n
            reasons[res][why or "-"] = n
        counted = sum(by_result.values())
        expected = r["offsets"] if r["first"] is not None else None
        dead = sum(r["dead_lettered"].values())
        problems = []
        if expected is None:
            problems.append("no offsets recorded")
        elif counted != expected:
            problems.append(f"{counted} events counted for {expected} offsets")
        if r["gaps"]:
            problems.append(f"{r['gaps']} offsets in the range counted for no day")
        if r["overlaps"]:
            problems.append(f"{r['overlaps']} offsets counted twice")
        if dead != by_result.get("invalid", 0):
            problems.append(f"{by_result.get('invalid', 0)} invalid events, {dead} dead-lettered")
        parts.append(
            {
                "topic": topic,
                "partition": part,
                "first_offset": r["first"],
                "last_offset": r["last"],
                "offsets": expected,
                "other_days": r["other_days"],
                "gaps": r["gaps"],
                "overlaps": r["overlaps"],
                "events": counted,
                "by_result": by_result,
                "by_reason": dict(reasons),
                "dead_lettered": dead,
                "dead_lettered_by_reason": dict(sorted(r["dead_lettered"].items())),
                "problems": problems,
                "pass": not problems,
            }
        )
    return parts, (all(p["pass"] for p in parts) if parts else None)


def _decisions_check(months, recon: list[dict], topic: str) -> dict[str, Any] | None:
    """The month's decisions in the metrics against the ``ok`` decisions Kafka carried
    (``None``: no decision of the month came through Kafka)."""
    parts = [p for p in recon if p["topic"] == topic]
    if not parts:
        return None
    metrics = _metric_decisions(months)
    kafka = sum(p["by_result"]["ok"] for p in parts)
    return {"topic": topic, "kafka_ok": kafka, "metrics": metrics, "pass": kafka == sum(metrics.values())}


def _metric_decisions(months: Mapping[tuple[str, str], AttributeMetrics]) -> dict[str, int]:
    """Decisions per model in the month's metrics (every attribute counts each decision once)."""
    out: dict[str, int] = {}
    for (model, _col), am in months.items():
        out[model] = max(out.get(model, 0), sum(g.decisions for g in am.groups))
    return out


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, tuple | list) and len(v) == 2:
        return f"[{_fmt(v[0], digits)}, {_fmt(v[1], digits)}]"
    return html.escape(str(v))


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-") or "x"


def day_axis(days: list[str], with_data: set[str]) -> tuple[list[str], list[int]]:
    """The days a per-day plot spans (first to last day with data; the whole month without
    any) and the positions that get a tick label: every day up to 16, else every other day
    (and always the last), so 1 to 31 days stay readable.

    >>> day_axis([f"2026-11-{d:02d}" for d in range(1, 31)], {"2026-11-30"})
    (['2026-11-30'], [0])
    >>> span, ticks = day_axis([f"2026-11-{d:02d}" for d in range(1, 31)], {"2026-11-01", "2026-11-30"})
    >>> len(span), ticks[:3], ticks[-1]
    (30, [0, 2, 4], 29)
    """
    have = [i for i, d in enumerate(days) if d in with_data]
    span = days[have[0] : have[-1] + 1] if have else list(days)
    step = 1 if len(span) <= 16 else 2
    ticks = list(range(0, len(span), step))
    if ticks[-1] != len(span) - 1:
        ticks.append(len(span) - 1)
    return span, ticks


def _plot(
    path: Path, model: str, col: str, days: list[str], per_day: dict[str, AttributeMetrics], rollbacks: list[float]
) -> list[str]:
    """The four per-day panels; returns the x tick labels drawn (``MM-DD``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    span, ticks = day_axis(days, set(per_day))
    x = list(range(len(span)))  # one position per day: no date locator guessing ticks for a short span
    day0 = dt.datetime.fromisoformat(span[0]).replace(tzinfo=dt.UTC).timestamp()
    groups = sorted({g.group for am in per_day.values() for g in am.groups})

    def series(fn) -> list[float]:
        out = []
        for d in span:
            am = per_day.get(d)
            v = fn(am) if am is not None else None
            out.append(float("nan") if v is None else v)
        return out

    def group_value(name: str, g: str):
        return lambda am: getattr(am.group(g), name) if am.group(g) is not None else None

    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True)
    ax = axes[0][0]
    ax.plot(x, series(lambda am: am.dp_ratio), marker="o", ms=4, label="DP ratio")
    ax.axhline(0.80, color="tab:orange", ls="--", lw=1, label="0.80")
    ax.axhline(0.75, color="tab:red", ls="--", lw=1, label="0.75")
    ax.set_title("demographic parity ratio")
    ax.legend(fontsize=7)
    ax = axes[0][1]
    for g in groups:
        ax.plot(x, series(group_value("disparate_impact", g)), marker="o", ms=3, label=g)
    ax.axhspan(0.80, 1.25, color="tab:green", alpha=0.08)
    ax.set_title("disparate impact per group")
    ax.legend(fontsize=6, ncol=2)
    ax = axes[1][0]
    ax.plot(x, series(lambda am: am.eo_gap), marker="o", ms=4, color="tab:purple")
    ax.axhline(0.12, color="tab:red", ls="--", lw=1)
    ax.set_title("equalized odds gap")
    ax = axes[1][1]
    for g in groups:
        ax.plot(x, series(group_value("expected_calibration_error", g)), marker="o", ms=3, label=g)
    ax.axhline(0.08, color="tab:red", ls="--", lw=1)
    ax.set_title("expected calibration error per group")
    gaps = [i for i, d in enumerate(span) if d not in per_day]
    labels = [span[i][5:] for i in ticks]
    for a in axes.flat:
        for i in gaps:  # a day without data is shaded, not bridged
            a.axvspan(i - 0.5, i + 0.5, color="0.85", alpha=0.5, lw=0)
        for t in rollbacks:
            pos = (t - day0) / 86400.0 - 0.5  # noon of a day sits on that day's point
            if -0.5 <= pos <= len(span) - 0.5:
                a.axvline(pos, color="black", lw=0.8, ls=":")
        a.set_xlim(-0.6, len(span) - 0.4)
        a.set_xticks(ticks, labels)
        if len(span) > 8:  # up to 16 labels: slanted so that they never run into each other
            a.tick_params(axis="x", labelrotation=45, labelsize=7)
        a.grid(alpha=0.3)
    note = f"{span[0]} – {span[-1]}" if len(span) > 1 else span[0]
    fig.suptitle(f"{model} · {col} (per day, {note}; dotted = rollback" + ("; grey = no data)" if gaps else ")"))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    drawn = [t.get_text() for t in axes[1][0].get_xticklabels()]
    plt.close(fig)
    return drawn


def _timeline_plot(path: Path, month: str, incidents: list[dict], rollbacks: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 2.6))

    def key(e: dict) -> tuple[str, str, str]:
        return e.get("model", ""), e.get("metric", ""), e.get("attribute", "")

    changes = [e for e in incidents if e.get("kind") == TIER_CHANGE]
    keys = sorted({key(e) for e in changes})
    for i, k in enumerate(keys):
        pts = sorted((e["ts"], e.get("tier") or 0) for e in changes if key(e) == k)
        xs = [dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None) for t, _ in pts]
        ax.step(xs, [v + i * 0.05 for _, v in pts], where="post", label=" / ".join(x for x in k if x))
    for e in rollbacks:
        if e.get("kind") == ROLLBACK_EXECUTE:
            ax.axvline(dt.datetime.fromtimestamp(e["ts"], dt.UTC).replace(tzinfo=None), color="black", ls=":")
    first = dt.datetime.fromisoformat(month + "-01")
    last = dt.datetime.fromisoformat(month_days(month)[-1]) + dt.timedelta(days=1)
    ax.set_xlim(first, last)
    ax.set_ylim(-0.2, 3.5)
    ax.set_yticks([0, 1, 2, 3])
    ax.set_ylabel("tier")
    ax.set_title(f"alert tiers and rollbacks, {month}" + ("" if keys or rollbacks else " (none)"))
    if keys:
        ax.legend(fontsize=6, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def export_month(
    month: str,
    out: str | os.PathLike[str],
    *,
    store: DailyStore,
    audit_log: str | os.PathLike[str] | None = None,
    pipeline_dir: str | os.PathLike[str] | None = None,
    settings: ExportSettings | None = None,
    progress: bool = False,
    now: float | None = None,
) -> ExportResult:
    """Write the export of ``month`` (``YYYY-MM``) into ``out`` (must not exist, or be empty)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    days = month_days(month)
    s = settings or ExportSettings()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(MSG_OUT_EXISTS.format(path=str(out)))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with Progress(
            TextColumn("[bold]audit export[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not progress,
            transient=True,
        ) as bar:
            task = bar.add_task("counts", total=None)
            months, per_day = month_metrics(store, month, s)
            keys = sorted(months)
            bar.update(task, total=len(keys) + 4, completed=1, description="audit log")

            entries = [e for e in iter_entries(audit_log) if _in_month(e.get("ts"), month)] if audit_log else []
            audit = verify(audit_log) if audit_log else None
            incidents = [e for e in entries if str(e.get("kind", "")).startswith(INCIDENT_KINDS)]
            rollbacks = [e for e in entries if str(e.get("kind", "")).startswith(ROLLBACK_KINDS)]
            seen = {id(e) for e in incidents + rollbacks}
            runs = _copy_runs(pipeline_dir, month, entries, tmp)
            seen |= {id(e) for e in entries if str(e.get("kind", "")).startswith(PIPELINE_KIND)}
            other = [e for e in entries if id(e) not in seen]
            plans = [{"run": r["run"], "href": r["plan"]} for r in runs if r["plan"]]
            if entries:
                _write_entries(tmp / MONTH_ENTRIES, entries)
            recon, recon_ok = _reconcile(store, month)
            decisions = _decisions_check(months, recon, s.decisions_topic)
            if recon_ok is not None and decisions is not None:
                recon_ok = recon_ok and decisions["pass"]
            bar.advance(task)

            (tmp / "plots").mkdir()
            bar.update(task, description="plots")
            rb_times = {}
            for e in rollbacks:
                if e.get("kind") == ROLLBACK_EXECUTE:
                    rb_times.setdefault(e.get("model"), []).append(float(e["ts"]))
            plots: dict[tuple[str, str], str] = {}
            for model, col in keys:
                rel = f"plots/{_slug(model)}__{_slug(col)}.png"
                pd_ = {d: am for (d, m, c), am in per_day.items() if m == model and c == col}
                _plot(tmp / rel, model, col, days, pd_, rb_times.get(model, []))
                plots[(model, col)] = rel
                bar.advance(task)
            _timeline_plot(tmp / "plots/incidents.png", month, incidents, rollbacks)

            bar.update(task, description="csv + json")
            rows: list[tuple] = []
            for (model, _col), am in months.items():
                rows += _csv_rows(MONTH, model, am)
            for (day, model, _col), am in per_day.items():
                rows += _csv_rows(day, model, am)
            with open(tmp / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(CSV_COLUMNS)
                for r in rows:
                    w.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in r])
            head = audit.head if audit else None
            report = {
                "month": month,
                "generated_at": now if now is not None else dt.datetime.now(dt.UTC).timestamp(),
                "settings": {
                    "min_decisions": s.min_decisions,
                    "min_labeled": s.min_labeled,
                    "confidence": s.confidence,
                    "reference_groups": dict(s.reference_groups),
                },
                "models": _models_json(months, per_day),
                "reconciliation": {"pass": recon_ok, "by": "event day", "partitions": recon, "decisions": decisions},
                "incidents": incidents,
                "rollbacks": rollbacks,
                "other_audit_entries": other,
                "remediation_plans": plans,
                "pipeline_runs": runs,
                "audit_entries_file": MONTH_ENTRIES if entries else None,
                "audit_log": None
                if audit is None
                else {
                    "path": str(audit_log),
                    "ok": audit.ok,
                    "entries": audit.entries,
                    "first_bad_seq": audit.seq,
                    "reason": audit.reason,
                    "head": None if head is None else {"seq": head[0], "hash": head[1]},
                },
            }
            (tmp / "report.json").write_bytes(
                orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
            )
            bar.advance(task)
            bar.update(task, description="html + manifest")
            (tmp / "report.html").write_text(
                _html(
                    month,
                    months,
                    per_day,
                    plots,
                    recon,
                    recon_ok,
                    decisions,
                    incidents,
                    rollbacks,
                    runs,
                    report["audit_log"],
                    len(rows),
                ),
                encoding="utf-8",
            )
            files = _write_manifest(tmp)
            bar.advance(task)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("audit export written", extra={"month": month, "out": str(out), "files": len(files)})
    return ExportResult(out, files, recon_ok, audit.ok if audit else True, len(rows))


def _models_json(months, per_day) -> dict:
    out: dict[str, dict] = {}
    for (model, col), am in months.items():
        out.setdefault(model, {})[col] = {"month": _am_json(am), "days": {}}
    for (day, model, col), am in per_day.items():
        out[model][col]["days"][day] = _am_json(am)
    return out


def _write_entries(path: Path, entries: list[dict]) -> None:
    """The month's audit-log entries, one JSON object a line (each row of the report links to its seq)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in entries))


def _copy_runs(pipeline_dir, month: str, entries: list[dict], tmp: Path) -> list[dict[str, Any]]:
    """The month's pipeline runs: started this month (a ``pipeline.start`` audit entry) or with a
    remediation plan or ``run.json`` written this month; their ``run.json`` and plans are copied
    into the bundle (``runs/<run>/``, ``plans/<run>/``)."""
    started = {str(x.get("run_id")): x for x in entries if x.get("kind") == PIPELINE_START and x.get("run_id")}
    root = Path(pipeline_dir) if pipeline_dir else None
    dirs = {p.name: p for p in root.iterdir() if p.is_dir()} if root is not None and root.is_dir() else {}
    out = []
    for name in sorted(set(started) | set(dirs)):
        run = dirs.get(name)
        plan_files = [run / n for n in PLAN_FILES if (run / n).is_file()] if run else []
        record = run / "run.json" if run and (run / "run.json").is_file() else None
        written = [f for f in [*plan_files, record] if f is not None and _in_month(f.stat().st_mtime, month)]
        if name not in started and not written:
            continue
        row: dict[str, Any] = {"run": name, "started": None, "incident": None, "model": None, "result": None}
        if name in started:
            x = started[name]
            row.update(started=x.get("ts"), incident=x.get("incident"), model=x.get("model"), seq=x.get("seq"))
        row["record"] = row["plan"] = None
        if record is not None:
            dst = tmp / "runs" / _slug(name)
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(record, dst / "run.json")
            row["record"] = f"runs/{_slug(name)}/run.json"
            try:
                doc = orjson.loads(record.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                doc = {}
            row["result"] = doc.get("result") if isinstance(doc, dict) else None
            row["model"] = row["model"] or (doc.get("model") if isinstance(doc, dict) else None)
        elif run is None:
            row["result"] = "no run directory"
        if plan_files:
            dst = tmp / "plans" / _slug(name)
            dst.mkdir(parents=True, exist_ok=True)
            for f in plan_files:
                shutil.copy2(f, dst / f.name)
            row["plan"] = f"plans/{_slug(name)}/{plan_files[0].name}"
        out.append(row)
    return out


def _write_manifest(root: Path) -> dict[str, str]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    with open(root / MANIFEST, "w", encoding="utf-8") as fh:
        for rel, h in files.items():
            fh.write(f"{h}  {rel}\n")
        fh.flush()
        os.fsync(fh.fileno())
    return files


def verify_export(root: str | os.PathLike[str]) -> list[str]:
    """Problems with an export directory's manifest (empty = every file matches, none unlisted)."""
    root = Path(root)
    problems = []
    listed = {}
    for line in (root / MANIFEST).read_text(encoding="utf-8").splitlines():
        h, _, rel = line.partition("  ")
        listed[rel] = h
    for rel, h in listed.items():
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != h:
            problems.append(f"{rel}: sha256 differs")
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != MANIFEST and rel not in listed:
            problems.append(f"{rel}: not in the manifest")
    return problems


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}
th{background:#f3f3f3}.pass{color:#070;font-weight:bold}.fail{color:#b00;font-weight:bold}
img{max-width:100%;border:1px solid #ddd}code{font-size:12px}"""


def _recon_html(month: str, months, recon: list[dict], recon_ok: bool | None, decisions: dict | None) -> list[str]:
    """The reconciliation section: its headline says only what its table shows."""
    e = html.escape
    if recon_ok is None:
        why = (
            "the month's statistics come from a replay or a backfill"
            if months
            else "nothing was recorded for this month"
        )
        return [
            f"<h2>Reconciliation against Kafka offsets — {e(NO_KAFKA)}</h2>",
            f"<p>No message with an event time in {e(month)} was consumed from Kafka ({why}): "
            "there are no offsets to reconcile.</p>",
        ]
    verdict = "<span class='pass'>PASS</span>" if recon_ok else "<span class='fail'>FAIL</span>"
    summary = (
        f"every message that carried an event of {e(month)} was counted exactly once"
        if recon_ok
        else "some messages of this month are not accounted for (see the failing rows)"
    )
    parts = [
        f"<h2>Reconciliation against Kafka offsets — {verdict}</h2>",
        f"<p>{summary.capitalize()}.</p>",
        "<p>Events are reconciled by their <em>event day</em> — the UTC day of their own timestamp; an "
        "invalid message has none and counts on the day it was consumed — so a month reconciles whenever "
        "it was consumed (a backfill, a catch-up or a replay in a later month included). Per topic "
        "partition: the events counted (ok + invalid + duplicate + late) must equal the offsets whose "
        "messages carry the month; between the first and the last of them, messages of other months fill "
        "the rest, and no offset may be counted for no day or twice; every invalid event must have been "
        "dead-lettered.</p>",
    ]
    if decisions is not None:
        n_metrics = sum(decisions["metrics"].values())
        state = "<span class='pass'>equal</span>" if decisions["pass"] else "<span class='fail'>differ</span>"
        per_model = ", ".join(f"{e(m)} {n}" for m, n in sorted(decisions["metrics"].items())) or "none"
        parts.append(
            f"<p>Decisions in the month's metrics: {n_metrics} ({per_model}); ok decisions on "
            f"<code>{e(decisions['topic'])}</code>: {decisions['kafka_ok']} — {state}.</p>"
        )
    parts.append(
        "<table><tr><th>topic</th><th>partition</th><th>offsets</th><th>of this month</th>"
        "<th>of other months</th><th>ok</th><th>invalid</th><th>duplicate</th><th>late</th><th>counted</th>"
        "<th>dead-lettered</th><th>reasons</th><th>check</th></tr>"
    )
    for p in recon:
        br = p["by_result"]
        reasons = "; ".join(
            f"{r}: " + ", ".join(f"{k}={v}" for k, v in rs.items()) for r, rs in p["by_reason"].items() if r != "ok"
        )
        ok = (
            "<span class='pass'>pass</span>"
            if p["pass"]
            else "<span class='fail'>fail: " + e("; ".join(p["problems"])) + "</span>"
        )
        rng = "–" if p["first_offset"] is None else f"{p['first_offset']}–{p['last_offset']}"
        parts.append(
            f"<tr><td>{e(p['topic'])}</td><td>{p['partition']}</td><td>{rng}</td><td>{p['offsets']}</td>"
            f"<td>{p['other_days']}</td><td>{br['ok']}</td><td>{br['invalid']}</td><td>{br['duplicate']}</td>"
            f"<td>{br['late']}</td><td>{p['events']}</td><td>{p['dead_lettered']}</td>"
            f"<td>{e(reasons) or '–'}</td><td>{ok}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _when(ts: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "–"


def _activity_html(incidents: list[dict], rollbacks: list[dict], runs: list[dict], any_: bool) -> list[str]:
    """Incidents, rollbacks, pipeline runs and remediation plans of the month, linked to each other:
    every audit row has an anchor ``#seq-N``; an incident id links to its pipeline runs, a run
    to its ``run.json`` and its plan (copied into the bundle)."""
    e = html.escape
    runs_of: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        if r.get("incident"):
            runs_of[str(r["incident"])].append(r)

    def incident_cell(x: dict) -> str:
        inc = x.get("incident")
        if not inc:
            return "–"
        links = "".join(f" → <a href='#run-{e(_slug(r['run']))}'>{e(r['run'])}</a>" for r in runs_of.get(str(inc), []))
        return f"<code>{e(str(inc))}</code>{links}"

    parts = [
        "<h2>Incidents, rollbacks and pipeline runs</h2><img src='plots/incidents.png' alt='alert tiers and rollbacks'>"
    ]
    if any_:
        parts.append(f"<p>Every row's audit entry: <a href='{MONTH_ENTRIES}'>{MONTH_ENTRIES}</a> (by seq).</p>")
    for title, rows in (("Incidents (tier changes, actions)", incidents), ("Rollbacks", rollbacks)):
        parts.append(f"<h3>{title}: {len(rows)}</h3>")
        if rows:
            parts.append(
                "<table><tr><th>seq</th><th>time (UTC)</th><th>kind</th><th>incident</th><th>details</th></tr>"
            )
            for x in rows:
                detail = ", ".join(
                    f"{k}={v}" for k, v in x.items() if k not in ("seq", "ts", "kind", "prev_hash", "hash", "incident")
                )
                parts.append(
                    f"<tr id='seq-{e(str(x.get('seq')))}'><td>{e(str(x.get('seq')))}</td><td>{_when(x.get('ts'))}</td>"
                    f"<td>{e(str(x['kind']))}</td><td>{incident_cell(x)}</td><td><code>{e(detail[:400])}</code></td></tr>"
                )
            parts.append("</table>")
    parts.append(f"<h3>Pipeline runs: {len(runs)}</h3>")
    if runs:
        parts.append(
            "<table><tr><th>run</th><th>started (UTC)</th><th>incident</th><th>model</th><th>result</th>"
            "<th>record</th><th>remediation plan</th></tr>"
        )
        for r in runs:
            rec = f"<a href='{e(r['record'])}'>run.json</a>" if r["record"] else "–"
            plan = f"<a href='{e(r['plan'])}'>plan</a>" if r["plan"] else "–"
            started = _when(r["started"]) if r["started"] is not None else "–"
            if r.get("seq") is not None:
                started = f"<span id='seq-{e(str(r['seq']))}'>{started}</span>"  # its audit entry's anchor
            parts.append(
                f"<tr id='run-{e(_slug(r['run']))}'><td>{e(r['run'])}</td><td>{started}</td>"
                f"<td>{e(str(r['incident'] or '–'))}</td><td>{e(str(r['model'] or '–'))}</td>"
                f"<td>{e(str(r['result'] or '–'))}</td><td>{rec}</td><td>{plan}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No pipeline run this month.</p>")
    plans = [r for r in runs if r["plan"]]
    parts.append(f"<h3>Remediation plans: {len(plans)}</h3>")
    if plans:
        parts.append(
            "<ul>"
            + "".join(
                f"<li><a href='{e(r['plan'])}'>{e(r['run'])}</a>"
                + (f" (incident <code>{e(str(r['incident']))}</code>)" if r["incident"] else "")
                + "</li>"
                for r in plans
            )
            + "</ul>"
        )
    else:
        parts.append("<p>No pipeline run produced a remediation plan this month.</p>")
    return parts


def _html(month, months, per_day, plots, recon, recon_ok, decisions, incidents, rollbacks, runs, audit, nrows) -> str:
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>fairwatch audit {e(month)}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Fairness audit — {e(month)}</h1>",
        "<p>Metrics computed from per-day sufficient statistics (counts), summed over the month — exact, "
        "not averaged. Files: <a href='metrics.csv'>metrics.csv</a> "
        f"({nrows} rows) · <a href='report.json'>report.json</a> · <a href='{MANIFEST}'>{MANIFEST}</a></p>",
    ]
    parts += _recon_html(month, months, recon, recon_ok, decisions)
    # metrics
    parts.append("<h2>Metrics of the month</h2>")
    for (model, col), am in months.items():
        parts.append(f"<h3>{e(model)} · {e(col)}</h3>")
        parts.append(
            f"<p>DP ratio {_fmt(am.dp_ratio)} {_fmt(am.dp_ratio_ci)} · DP difference "
            f"{_fmt(am.dp_difference)} {_fmt(am.dp_difference_ci)} · EO gap {_fmt(am.eo_gap)} "
            f"{_fmt(am.eo_gap_ci)} · reference group {e(str(am.reference))}</p>"
        )
        parts.append(
            "<table><tr><th>group</th><th>decisions</th><th>labeled</th><th>selection rate</th>"
            "<th>95 % CI</th><th>DI</th><th>DI CI</th><th>TPR</th><th>FPR</th><th>accuracy</th>"
            "<th>ECE</th></tr>"
        )
        for g in am.groups:
            parts.append(
                f"<tr><td>{e(g.group)}</td><td>{g.decisions}</td><td>{g.labeled}</td><td>{_fmt(g.selection_rate)}</td>"
                f"<td>{_fmt(g.selection_rate_ci)}</td><td>{_fmt(g.disparate_impact)}</td>"
                f"<td>{_fmt(g.disparate_impact_ci)}</td><td>{_fmt(g.true_positive_rate)}</td>"
                f"<td>{_fmt(g.false_positive_rate)}</td><td>{_fmt(g.accuracy)}</td>"
                f"<td>{_fmt(g.expected_calibration_error)}</td></tr>"
            )
        parts.append("</table>")
        parts.append(f"<img src='{e(plots[(model, col)])}' alt='{e(model)} {e(col)} per day'>")
    parts += _activity_html(incidents, rollbacks, runs, bool(incidents or rollbacks or runs))
    parts.append("<h2>Audit log</h2>")
    if audit is None:
        parts.append("<p>No audit log given.</p>")
    else:
        state = (
            "<span class='pass'>chain intact</span>"
            if audit["ok"]
            else (f"<span class='fail'>BROKEN at seq {audit['first_bad_seq']}: {e(str(audit['reason']))}</span>")
        )
        head = audit["head"]
        parts.append(
            f"<p><code>{e(audit['path'])}</code>: {audit['entries']} entries, {state}"
            + (f"; head seq {head['seq']}, hash <code>{head['hash']}</code>" if head else "")
            + "</p>"
        )
    # Marks images that did not load (a broken report is visible, and testable in a headless browser).
    parts.append(
        "<p id='image-check'>image check pending</p><script>window.addEventListener('load',function(){"
        "var im=[].slice.call(document.images),"
        "bad=im.filter(function(i){return !(i.complete&&i.naturalWidth>0)});"
        "var p=document.getElementById('image-check');p.textContent=bad.length?('IMAGES NOT LOADED: '+"
        "bad.map(function(i){return i.getAttribute('src')}).join(', ')):('all '+im.length+' images loaded');"
        "p.className=bad.length?'fail':'pass';});</script>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)
