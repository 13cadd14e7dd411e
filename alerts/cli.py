"""``fairwatch flags status|rollback|restore`` and ``fairwatch baseline set|show``.

Wire into the main parser with ``add_flags_parser(sub, load=…)`` and
``add_baseline_parser(sub, load=…)`` (``load``: the application's configuration loader);
every handler returns an exit code (0 ok, 1 the flag store failed, 2 bad input). Configuration: the ``alerts:`` key of
``--config FILE`` (or ``FAIRWATCH_CONFIG``); ``--flag-file`` points the flagd file
store somewhere else, ``--baseline-file`` the baseline store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

# Building the parsers imports nothing heavy (``fairwatch --help`` starts at once); each
# handler imports what it uses. pydantic's ValidationError is a ValueError.
if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import AlertsConfig
    from .rollback import RollbackManager

    #: The application's configuration loader, ``path → AlertsConfig`` (file + ``FAIRWATCH_…``
    #: environment, errors as ``ConfigError``): this layer cannot import it, so it is passed in.
    LoadAlerts = Callable[[str | None], AlertsConfig]

__all__ = ["add_flags_parser", "add_baseline_parser", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="fairwatch YAML (its alerts: section)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _alerts_config(args: argparse.Namespace) -> AlertsConfig:
    path = getattr(args, "config", None) or os.environ.get("FAIRWATCH_CONFIG")
    cfg = args.load_alerts(path)
    upd: dict[str, Any] = {}
    if getattr(args, "flag_file", None):
        upd["rollback"] = cfg.rollback.model_copy(update={"flag_store": {"kind": "flagd-file", "path": args.flag_file}})
    if getattr(args, "baseline_file", None):
        upd["baseline_path"] = args.baseline_file
    return cfg.model_copy(update=upd) if upd else cfg


def _err(msg: str, code: int = EXIT_USAGE) -> int:
    print(f"fairwatch: {msg}", file=sys.stderr)
    return code


def _print(obj: Any, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else text)


# -- flags ---------------------------------------------------------------------------
def add_flags_parser(sub: argparse._SubParsersAction, *, load: LoadAlerts) -> argparse.ArgumentParser:
    flags = sub.add_parser(
        "flags",
        help="show, roll back or restore the model-version feature flags",
        description="Read or switch the feature flag that picks the served model version "
        "(alerts.rollback.models). Every change is appended to the audit log.",
    )
    flags.set_defaults(load_alerts=load)
    fsub = flags.add_subparsers(dest="flags_command", metavar="ACTION")
    fsub.required = True
    st = fsub.add_parser("status", help="the served version of every configured model flag")
    rb = fsub.add_parser(
        "rollback", help="serve the approved baseline version (alerts.rollback.models.<m>.rollback_to)"
    )
    rs = fsub.add_parser("restore", help="serve the version from before the last rollback again")
    for p in (st, rb, rs):
        _common(p)
        p.add_argument("--flag-file", metavar="FILE", help="flagd flag file (overrides alerts.rollback.flag_store)")
    for p in (rb, rs):
        p.add_argument("--model", required=True, help="monitored model name")
        p.add_argument("--reason", required=True, help="why (goes to the audit log), e.g. the incident id")
        p.add_argument("--to", metavar="VERSION", help="serve this variant instead of the default target")
        p.add_argument("--dry-run", action="store_true", help="check everything, change nothing")
    st.set_defaults(func=_flags_status)
    rb.set_defaults(func=_flags_rollback)
    rs.set_defaults(func=_flags_restore)
    return flags


def _manager(args: argparse.Namespace) -> RollbackManager:
    from .audit import AuditLog
    from .flags import flag_store_from_config
    from .rollback import RollbackManager

    cfg = _alerts_config(args)
    store = flag_store_from_config(cfg.rollback.flag_store)
    return RollbackManager(cfg.rollback, store, audit=AuditLog(cfg.audit_path))


def _flags_status(args: argparse.Namespace) -> int:
    try:
        mgr = _manager(args)
    except (ValueError, OSError) as exc:
        return _err(f"configuration: {exc}")
    rows = mgr.status()
    if not rows:
        return _err("no model flags configured (alerts.rollback.models)")
    text = "\n".join(
        f"{r['model']}: flag {r['flag']} serves {r['live'] or '?'} (rollback target {r['rollback_to']})"
        + (f" — error: {r['error']}" if r["error"] else "")
        for r in rows
    )
    _print(rows, args.json, text)
    return EXIT_FAILURE if any(r["error"] for r in rows) else EXIT_OK


def _flags_rollback(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        return _err("--reason must not be empty")
    try:
        mgr = _manager(args)
        rec = mgr.rollback(
            f"manual/{args.model}/{int(time.time())}",
            args.model,
            now=time.time(),
            reason=args.reason,
            manual=True,
            dry_run=args.dry_run,
            target=args.to,
        )
    except KeyError as exc:
        return _err(str(exc.args[0]))
    except (ValueError, OSError) as exc:
        return _err(f"configuration: {exc}")
    _print(
        rec.as_dict(),
        args.json,
        f"{rec.model}: {rec.status} ({rec.previous} → {rec.target}){' — ' + rec.reason if rec.reason else ''}",
    )
    return EXIT_FAILURE if rec.status == "failed" else EXIT_OK


def _flags_restore(args: argparse.Namespace) -> int:
    from .flags import FlagStoreError

    if not args.reason.strip():
        return _err("--reason must not be empty")
    try:
        mgr = _manager(args)
        change = mgr.restore(args.model, reason=args.reason, to=args.to, dry_run=args.dry_run)
    except KeyError as exc:
        return _err(str(exc.args[0]))
    except FlagStoreError as exc:
        return _err(str(exc), EXIT_FAILURE if not isinstance(exc, ValueError) else EXIT_USAGE)
    except (ValueError, OSError) as exc:
        return _err(str(exc))
    _print(
        change,
        args.json,
        f"{args.model}: flag {change['flag_key']} {change['previous']} → {change['variant']}"
        + (" (dry run)" if change["dry_run"] else "")
        + (" (no change)" if change["noop"] else ""),
    )
    return EXIT_OK


# -- baseline ------------------------------------------------------------------------
def add_baseline_parser(sub: argparse._SubParsersAction, *, load: LoadAlerts) -> argparse.ArgumentParser:
    base = sub.add_parser(
        "baseline",
        help="set or show the approved fairness baselines",
        description="Degradation tiers are measured against the approved baseline. "
        "Set it from a pipeline report or a --snapshot JSON.",
    )
    base.set_defaults(load_alerts=load)
    bsub = base.add_subparsers(dest="baseline_command", metavar="ACTION")
    bsub.required = True
    bs = bsub.add_parser("set", help="approve a baseline from a report")
    bw = bsub.add_parser("show", help="print the effective baselines and their source")
    for p in (bs, bw):
        _common(p)
        p.add_argument("--baseline-file", metavar="FILE", help="baseline store (default: alerts.baseline_path)")
    bs.add_argument(
        "--from-report",
        required=True,
        metavar="FILE",
        help="pipeline report JSON (final.metrics) or a fairwatch --snapshot JSON",
    )
    bs.add_argument("--model", help="model name (default: from the report)")
    bs.add_argument("--window", help="snapshot window to take (default: the longest)")
    bs.add_argument("--attribute", help="attribute the report's metrics belong to (default: its primary attribute)")
    bs.add_argument("--approved-by", help="who approved it (audit)")
    bw.add_argument("--model", help="only this model")
    bs.set_defaults(func=_baseline_set)
    bw.set_defaults(func=_baseline_show)
    return base


def _baseline_set(args: argparse.Namespace) -> int:
    from .audit import AuditLog
    from .baseline import BaselineStore, baseline_from_report

    try:
        cfg = _alerts_config(args)
        model, values = baseline_from_report(
            args.from_report, model=args.model, window=args.window, attribute=args.attribute
        )
        BaselineStore(cfg.baseline_path).set(
            model, values, source=f"report {args.from_report}", approved_by=args.approved_by
        )
        AuditLog(cfg.audit_path).append(
            "baseline.set", model=model, values=values, report=args.from_report, approved_by=args.approved_by
        )
    except (ValueError, OSError) as exc:
        return _err(str(exc))
    _print(
        {"model": model, "values": values},
        args.json,
        f"baseline of {model} set from {args.from_report}: "
        + ", ".join(f"{m}[{a}]={v:.4f}" for m, per in sorted(values.items()) for a, v in sorted(per.items())),
    )
    return EXIT_OK


def _baseline_show(args: argparse.Namespace) -> int:
    from .baseline import BaselineStore

    try:
        cfg = _alerts_config(args)
    except (ValueError, OSError) as exc:
        return _err(str(exc))
    store = BaselineStore(cfg.baseline_path, defaults={m: e.values for m, e in cfg.baselines.items()})
    entries = store.entries()
    if args.model:
        if args.model not in entries:
            return _err(f"no baseline for model {args.model!r}; known: {sorted(entries)}")
        entries = {args.model: entries[args.model]}
    lines = []
    for model, e in sorted(entries.items()):
        lines.append(f"{model} (source: {e.get('source')})")
        for m, per in sorted(e["values"].items()):
            for a, v in sorted(per.items()):
                lines.append(f"  {m:<28} {a:<12} {v:.4f}")
    _print(entries, args.json, "\n".join(lines) or "no baselines")
    return EXIT_OK
