"""The ``fairwatch`` command line: a thin layer over programmatic ``run`` functions.

Exit codes: 0 success, 1 runtime failure, 2 usage error (or a missing extra), 3 configuration error.

Building the parser imports no layer below the application and no heavy library
(numpy, pandas, scikit-learn, matplotlib…): each command function imports what it needs,
so ``fairwatch --help`` starts at once (benchmarks/startup.py).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from fairwatch.app.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_alerts, load_command_config, needs_extra

__all__ = ["main", "build_parser"]

log = logging.getLogger("fairwatch.cli")

DESCRIPTION = """\
fairwatch — production fairness monitoring.

Reads a model's decisions (and later their real outcomes), keeps windowed
per-group fairness statistics (demographic parity, equalized odds, calibration,
intersectional groups) and exports them as Prometheus metrics on :9108/metrics.

Configuration: --config FILE (YAML) or FAIRWATCH_CONFIG; every key can be
overridden by FAIRWATCH_<KEY> / FAIRWATCH_<SECTION>__<KEY> environment variables.
With no configuration at all every command runs on embedded defaults.
"""

#: input files of replay and backtest: the compressed forms they read as they are
_PACKED = " (plain, or compressed with gzip, bzip2 or xz)"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {text!r}")
    return value


class _Version(argparse.Action):
    """``--version``: reads the package metadata only when asked (it costs more than the parser)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        import fairwatch

        print(f"fairwatch {fairwatch.__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fairwatch", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action=_Version)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="YAML configuration file (default: embedded defaults)")
    common.add_argument("--log-format", choices=("text", "json"), help="log format (default: config log.format)")
    common.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="log level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run the whole loop on the built-in loan simulator, live",
        description=(
            "Simulated loan decisions (race × sex groups) and their delayed outcomes flow through "
            "the engine; metrics are served on :9108/metrics and shown in a live table. The default "
            "scenario drops one group's approval rate two simulated hours in. Ctrl-C stops."
        ),
    )
    demo.add_argument("--port", type=_port, help="metrics port (default: config metrics.port, 9108)")
    demo.add_argument("--scenario", choices=SCENARIOS, help="drift scenario (default: dp-drop)")
    demo.add_argument("--seed", type=int, help="simulator seed (default: 7)")
    demo.add_argument("--speed", type=_positive_float, help="simulated seconds per wall second (default: 120)")
    demo.add_argument("--rate", type=_positive_float, help="decisions per simulated second (default: 5)")
    demo.add_argument(
        "--duration",
        type=_duration_arg,
        metavar="DURATION",
        help="stop after this much wall time, e.g. 10s, 5m (default: run until Ctrl-C)",
    )
    demo.add_argument(
        "--interval",
        type=_positive_float,
        default=2.0,
        metavar="SECONDS",
        help="evaluation interval in wall seconds (default: 2)",
    )
    demo.add_argument("--no-live", action="store_true", help="log evaluations instead of drawing the live table")
    demo.set_defaults(func=_cmd_demo)

    rep = sub.add_parser(
        "replay",
        parents=[common],
        help="replay JSONL event files through the engine and print or save the final snapshot",
        description=(
            "Reads decision/v1 events (one JSON object per line) and, optionally, outcome/v1 events, "
            "feeding outcomes in event-time order as they would have arrived live. Invalid lines are "
            "counted and written with their reason to the dead-letter file; they never stop the replay."
        ),
    )
    rep.add_argument("--file", required=True, metavar="DECISIONS.jsonl", help="decision events, JSON lines" + _PACKED)
    rep.add_argument("--outcomes", metavar="OUTCOMES.jsonl", help="outcome events, JSON lines" + _PACKED)
    rep.add_argument(
        "--snapshot", metavar="OUT.json", help="write the final metric snapshot (format: docs/files.md) here"
    )
    rep.add_argument("--dead-letter", metavar="FILE", help="where rejected lines go (default: <file>.deadletter.jsonl)")
    rep.add_argument("--batch-size", type=_positive_int, default=10_000, help="events per micro-batch (default: 10000)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    rep.set_defaults(func=_cmd_replay)

    bt = sub.add_parser(
        "backtest",
        parents=[common],
        help="run the alert policy over history in event time, actions dry-run",
        description=(
            "Feeds decision/v1 (and outcome/v1) JSON lines through the daemon's engine and alert policy, "
            "evaluated every evaluation_interval of event time. Actions are dry-run: every rollback is "
            "simulated, nothing external is called. Writes DIR/incidents.jsonl (one line per tier change) "
            "and DIR/summary.json; invalid lines are counted and dead-lettered to DIR/deadletter.jsonl."
        ),
    )
    bt.add_argument("--file", required=True, metavar="DECISIONS.jsonl", help="decision events, JSON lines" + _PACKED)
    bt.add_argument("--outcomes", metavar="OUTCOMES.jsonl", help="outcome events, JSON lines" + _PACKED)
    bt.add_argument(
        "--learn-baseline",
        type=_duration_arg,
        metavar="DURATION",
        help="learn each model's baseline from its first DURATION of event time (e.g. 24h)",
    )
    bt.add_argument("--out", required=True, metavar="DIR", help="directory for incidents.jsonl and summary.json")
    bt.add_argument("--batch-size", type=_positive_int, default=10_000, help="lines per read (default: 10000)")
    bt.add_argument("--no-progress", action="store_true", help="no progress bar")
    bt.set_defaults(func=_cmd_backtest)

    run = sub.add_parser(
        "run",
        parents=[common],
        help="the daemon: consume Kafka, keep windows, export metrics, checkpoint",
        description=(
            "Consumes fairness.decisions and fairness.outcomes in one consumer group, applies them to "
            "the windows, serves /metrics, /healthz and /readyz, and checkpoints state and offsets "
            "(offsets are committed only after the checkpoint that contains them is durable). "
            "SIGTERM stops cleanly with a final checkpoint. SIGUSR1 writes the stack of every thread "
            "to stderr and the daemon goes on (for a daemon that seems stuck)."
        ),
    )
    run.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="override kafka.bootstrap_servers")
    run.add_argument("--group-id", help="override kafka.group_id")
    run.add_argument("--state", metavar="URL", help="override state.url (sqlite:///PATH or postgresql://…)")
    run.add_argument("--port", type=_port, help="override metrics.port")
    run.set_defaults(func=_cmd_run)

    sim = sub.add_parser(
        "simulate",
        parents=[common],
        help="write the loan simulator's decisions and delayed outcomes to Kafka",
        description="Produces decision/v1 and outcome/v1 events keyed by model, paced by the simulated clock.",
    )
    sim.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT", help="Kafka bootstrap servers")
    sim.add_argument("--rate", type=_positive_float, default=10.0, help="decisions per simulated second (default: 10)")
    sim.add_argument("--scenario", choices=SCENARIOS, default="none", help="drift scenario (default: none)")
    sim.add_argument(
        "--drift-at",
        type=_duration_arg,
        default=3600.0,
        metavar="DURATION",
        help="simulated time of the drift (default: 1h)",
    )
    sim.add_argument("--seed", type=int, default=0, help="simulator seed (default: 0)")
    sim.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per wall second; 0 = as fast as possible (default: 1)",
    )
    sim.add_argument("--duration", type=_duration_arg, metavar="DURATION", help="stop after this much simulated time")
    sim.add_argument("--max-decisions", type=_positive_int, metavar="N", help="stop after N decisions")
    sim.add_argument(
        "--outcome-delay",
        type=_duration_arg,
        default=1800.0,
        metavar="DURATION",
        help="median outcome delay (default: 30m)",
    )
    sim.set_defaults(func=_cmd_simulate)

    from fairwatch.alerts.cli import add_baseline_parser, add_flags_parser

    add_flags_parser(sub, load=load_alerts)
    from fairwatch.app.audit_cli import add_audit_parser

    add_audit_parser(sub)
    add_baseline_parser(sub, load=load_alerts)
    from fairwatch.intervention.cli import add_pipeline_parser

    add_pipeline_parser(sub)
    sub.choices["pipeline"].set_defaults(extra="pipeline")
    return parser


SCENARIOS = ("none", "dp-drop", "calibration-drift", "label-shift", "small-group-noise")


def _duration_arg(text: str) -> float:
    from fairwatch.monitor.windows import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    import faulthandler

    from fairwatch.app.daemon import CheckpointError, run
    from fairwatch.app.redact import redact

    cfg = load_command_config(args)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>`: every thread's stack on stderr, the daemon goes on
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    kafka = {k: v for k, v in (("bootstrap_servers", args.bootstrap_servers), ("group_id", args.group_id)) if v}
    updates: dict = {}
    if kafka:
        updates["kafka"] = cfg.kafka.model_copy(update=kafka)
    if args.state:
        updates["state"] = cfg.state.model_copy(update={"url": args.state})
    if args.port is not None:
        updates["metrics"] = cfg.metrics.model_copy(update={"port": args.port})
    try:
        return run(cfg.model_copy(update=updates))
    except CheckpointError as exc:  # a changed configuration is a ConfigError: exit code 3, in main
        print(redact(f"fairwatch run: {exc}"), file=sys.stderr)
        return EXIT_FAILURE


def _simulation_start(args: argparse.Namespace) -> float:
    """Real time when paced at 1×; otherwise early enough that the stream ends near now,
    so the daemon's future-skew check (wall clock) accepts every event."""
    now = time.time()
    if args.speed == 1.0:
        return now
    span = args.duration or (args.max_decisions / args.rate if args.max_decisions else 30 * 86400.0)
    return now - span - 60.0


@needs_extra("simulate", "demo")
def _cmd_simulate(args: argparse.Namespace) -> int:
    import signal
    import threading

    from fairwatch.streaming.producer import ProduceError, simulate
    from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay

    cfg = load_command_config(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sim = LoanSimulator(
        seed=args.seed,
        rate=args.rate,
        scenario=args.scenario,
        drift_at=args.drift_at,
        delay=OutcomeDelay(kind="lognormal", median_s=args.outcome_delay, sigma=0.5),
        start=_simulation_start(args),
    )
    try:
        result = simulate(
            sim,
            bootstrap_servers=args.bootstrap_servers,
            decisions_topic=cfg.kafka.decisions_topic,
            outcomes_topic=cfg.kafka.outcomes_topic,
            speed=args.speed,
            duration=args.duration,
            max_decisions=args.max_decisions,
            stop=stop,
            client_options=cfg.kafka.options,
        )
    except ProduceError as exc:
        print(f"fairwatch simulate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(
        f"produced {result.decisions} decisions and {result.outcomes} outcomes "
        f"({result.simulated_seconds:.0f} simulated seconds)",
        file=sys.stderr,
    )
    return EXIT_OK


@needs_extra("demo", "demo")
def _cmd_demo(args: argparse.Namespace) -> int:
    from fairwatch.app.demo import run_demo

    cfg = load_command_config(args)
    sim = cfg.simulator.model_copy(
        update={
            k: v
            for k, v in (("scenario", args.scenario), ("seed", args.seed), ("speed", args.speed), ("rate", args.rate))
            if v is not None
        }
    )
    metrics = cfg.metrics.model_copy(update={"port": args.port} if args.port is not None else {})
    cfg = cfg.model_copy(update={"simulator": sim, "metrics": metrics})
    live = not args.no_live and sys.stdout.isatty()
    return run_demo(cfg, duration=args.duration, interval=args.interval, live=live)


def _cmd_replay(args: argparse.Namespace) -> int:
    import orjson

    from fairwatch.monitor.replay import replay
    from fairwatch.streaming.files import InputFileError, stem

    cfg = load_command_config(args)
    dead = args.dead_letter or stem(args.file) + ".deadletter.jsonl"
    for option, out in (("--snapshot", args.snapshot), ("--dead-letter", dead)):
        problem = _unwritable(out)
        if problem:  # found now, not after a replay of hours
            print(f"fairwatch replay: {option}: cannot write {out!r}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    try:
        result = replay(
            args.file,
            outcomes=args.outcomes,
            settings=cfg.engine_settings(),
            dead_letter=dead,
            batch_size=args.batch_size,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    except (FileNotFoundError, InputFileError) as exc:
        print(f"fairwatch replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    data = orjson.dumps(result.snapshot.to_json(), option=orjson.OPT_INDENT_2)
    if args.snapshot:
        Path(args.snapshot).parent.mkdir(parents=True, exist_ok=True)
        Path(args.snapshot).write_bytes(data + b"\n")
    else:
        sys.stdout.buffer.write(data + b"\n")
    print(
        f"replayed {result.decisions_read} decision lines and {result.outcomes_read} outcome lines; "
        f"{result.rejected} rejected" + (f" (written to {result.dead_letter})" if result.dead_letter else ""),
        file=sys.stderr,
    )
    return EXIT_OK


def _unwritable(path: str | None) -> str | None:
    """Why a file cannot be written at ``path`` (missing folders made then), or ``None``;
    looks only, makes nothing."""
    import os

    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        return "it is a directory"
    if p.exists():
        return None if os.access(p, os.W_OK) else "permission denied"
    nearest = next(q for q in p.parents if q.exists())  # the folder the missing ones go in
    if not nearest.is_dir():
        return f"{str(nearest)!r} is a file, not a folder"
    return None if os.access(nearest, os.W_OK) else "permission denied"


def _cmd_backtest(args: argparse.Namespace) -> int:
    from fairwatch.app.backtest import backtest

    cfg = load_command_config(args)
    try:
        result = backtest(
            args.file,
            outcomes=args.outcomes,
            config=cfg,
            learn_baseline=args.learn_baseline,
            out=args.out,
            batch_size=args.batch_size,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"fairwatch backtest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    s = result.summary
    first = ", ".join(f"tier {k} at {v}" for k, v in s["first_raise_at"].items() if v) or "none"
    print(
        f"backtest: {s['decisions']} decision lines, {s['outcomes']} outcome lines, {s['rejected']} rejected"
        + (f" (written to {result.dead_letter})" if result.dead_letter else "")
        + f"; {s['evaluations']} evaluations every {s['evaluation_interval_s']:g} s of event time\n"
        f"tier raises: tier 1 {s['tier_raises']['1']}, tier 2 {s['tier_raises']['2']}, tier 3 {s['tier_raises']['3']}"
        f"; first raises: {first}\n"
        f"simulated rollbacks: {len(s['rollbacks'])}"
        + "".join(f"\n  {r['at']} {r['model']} (from {r['from_version']})" for r in s["rollbacks"])
        + f"\nwrote {result.incidents} and {result.summary_path}"
        + "".join(
            f"\nwarning: the baseline of {u['model']!r} was still being learned when its events ended"
            f" ({u['events_end']}; --learn-baseline needs them until {u['learning_until']}): the degradation"
            " rules, relative to a baseline, judged nothing for it; only the absolute guards did"
            for u in s["baseline_unfinished"]
        )
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the real command line (not a caller embedding us): tune this process
        from fairwatch.app.runtime import tune_gc

        tune_gc()
    from fairwatch.app.config import EXIT_CONFIG, ConfigError
    from fairwatch.monitor.exporter import ListenError

    func = args.func
    if getattr(args, "extra", None):  # the pipeline's stages: one check for all of them
        func = needs_extra(args.command, args.extra)(func)
    try:
        return func(args)
    except ConfigError as exc:
        from fairwatch.app.redact import redact

        print(redact(f"fairwatch: configuration error: {exc}"), file=sys.stderr)
        return EXIT_CONFIG
    except ListenError as exc:  # the address is configuration too: metrics.host / metrics.port (--port)
        print(f"fairwatch: configuration error: metrics.port: {exc}; choose another with --port or metrics.port",
              file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
