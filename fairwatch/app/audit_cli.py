"""``fairwatch audit verify`` and ``fairwatch audit export``: thin layers over the audit modules.

:mod:`fairwatch.monitor.audit` (the chain) and :mod:`fairwatch.app.export` (the monthly report).

Exit codes: 0 ok; 1 the chain is broken (verify) or a check of the export failed
(the export is written anyway); 2 bad arguments; 3 bad configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fairwatch.app.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_command_config, needs_extra

__all__ = ["add_audit_parser"]


def _month(text: str) -> str:
    from fairwatch.monitor.daily import month_days

    try:
        month_days(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_audit_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    audit = sub.add_parser(
        "audit",
        help="verify the hash-chained audit log; export a month's audit report",
        description="The audit log (alerts, tier changes, rollbacks, pipeline runs, baseline and config changes) "
        "is append-only and hash-chained; the monthly export reports exact metrics from per-day counts.",
    )
    asub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    asub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE", help="YAML configuration file (default: embedded defaults)")
        p.add_argument("--log", metavar="PATH", help="the audit log (default: config alerts.audit_path)")

    v = asub.add_parser(
        "verify",
        help="check every entry of the chain; exit 1 naming the first bad entry",
        description="Recomputes every entry's SHA-256 and the chain of prev_hash links, checks the "
        "seq numbers and the head file; names the first edited, reordered, inserted or removed entry.",
    )
    common(v)
    v.set_defaults(func=_cmd_verify)

    e = asub.add_parser(
        "export",
        help="the monthly audit report: HTML with plots, CSV, JSON, SHA-256 manifest",
        description="Metrics of every day and of the month from the persisted per-day counts, "
        "incidents and rollbacks from the audit log, remediation plans, and the reconciliation of "
        "consumed events against Kafka offsets.",
    )
    common(e)
    e.add_argument("--month", required=True, type=_month, metavar="YYYY-MM", help="the month (UTC)")
    e.add_argument("--out", required=True, metavar="DIR", help="output directory (must not exist or be empty)")
    e.add_argument(
        "--state",
        metavar="URL",
        help="state store URL whose per-day statistics to read "
        "(default: config state.url); the statistics live in <state>.daily.db",
    )
    e.add_argument("--daily-db", metavar="PATH", help="the per-day statistics file (overrides --state)")
    e.add_argument(
        "--pipeline-dir",
        metavar="DIR",
        help="pipeline run dir with remediation plans (default: config pipeline_runs.run_dir)",
    )
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_export)
    return audit


def _load(args: argparse.Namespace):
    return load_command_config(args)


def _cmd_verify(args: argparse.Namespace) -> int:
    from fairwatch.monitor.audit import head_path, verify

    path = args.log or _load(args).alerts.audit_path
    if not Path(path).exists() and not head_path(path).exists():
        # nothing was ever written there: not a verified chain (a mistyped --log must not read "ok")
        where = "--log" if args.log else "alerts.audit_path"
        print(f"fairwatch audit verify: {where}: no audit log at {str(path)!r} (and no head file"
              f" {str(head_path(path))!r}): nothing to verify", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    res = verify(path)
    print(res.message(path), file=sys.stdout if res.ok else sys.stderr)
    return EXIT_OK if res.ok else EXIT_FAILURE


@needs_extra("audit export", "audit")
def _cmd_export(args: argparse.Namespace) -> int:
    from fairwatch.app.export import NO_KAFKA, ExportSettings, export_month
    from fairwatch.monitor.daily import DailyStore

    cfg = _load(args)
    daily = args.daily_db or cfg.audit.model_copy(update={"daily_stats": True}).daily_path(args.state or cfg.state.url)
    if not daily or not Path(daily).is_file():
        print(
            f"fairwatch audit export: no per-day statistics file {daily!r} (see --daily-db / --state)", file=sys.stderr
        )
        return EXIT_USAGE
    store = DailyStore(daily)
    try:
        res = export_month(
            args.month,
            args.out,
            store=store,
            audit_log=args.log or cfg.alerts.audit_path,
            pipeline_dir=args.pipeline_dir or cfg.pipeline_runs.run_dir,
            settings=ExportSettings(
                cfg.min_decisions,
                cfg.min_labeled,
                cfg.confidence_level,
                dict(cfg.reference_groups),
                decisions_topic=cfg.kafka.decisions_topic,
            ),
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    except FileExistsError as exc:
        print(f"fairwatch audit export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()
    recon = {True: "pass", False: "FAIL", None: NO_KAFKA}[res.reconciliation_ok]
    print(
        f"{res.out}/report.html: {len(res.files)} files, {res.rows} metric rows; reconciliation {recon}; "
        f"audit chain {'intact' if res.audit_ok else 'BROKEN'}"
    )
    return EXIT_FAILURE if res.reconciliation_ok is False or not res.audit_ok else EXIT_OK
