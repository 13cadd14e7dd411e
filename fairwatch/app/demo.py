"""``fairwatch demo``: the built-in loan simulator → engine → alerts → rollback → pipeline, live.

The simulated clock runs ``speed`` times faster than the wall clock, so the
windows fill within minutes and the scenario's drift incident (by default a
drop of one group's approval rate two simulated hours in) shows up while you
watch: tiers rise in the live table, a tier-3 incident rolls the flagd flag file
back to the baseline version, the simulator — like a serving app — reads the
flag through the flag store and serves that version, and the verification
reports whether the metrics recovered. The Tier ≥ 2 incident also starts the
intervention pipeline on the simulator's own labeled loans in a separate process
(:mod:`fairwatch.app.demo_pipeline`); the table shows its stage, its result and the path
of the remediation plan it wrote. Ctrl-C stops cleanly (a second Ctrl-C forces).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fairwatch.app.config import Config
from fairwatch.app.families import FAMILIES
from fairwatch.monitor.engine import Engine
from fairwatch.monitor.exporter import ListenError, serve_metrics
from fairwatch.monitor.snapshot import Snapshot, SnapshotBoard
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay

__all__ = ["run_demo", "render", "advance", "DEMO_FLAG"]

DEMO_FLAG = "loan-model"
#: simulated seconds between alert evaluations (the engine is fed in chunks this long)
ALERT_STEP = 30.0

log = logging.getLogger("fairwatch.demo")


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def render(snap: Snapshot, *, header: str = "", window: str | None = None, alerts=None, pipelines=None) -> Group:
    """The live view: between-group metrics per window, per-group rates for one window, tiers."""
    windows = [w for w in dict.fromkeys(wm.window for wm in snap.windows)]
    focus = window or (windows[0] if windows else "")
    summary = Table(title="Between groups (95 % CI)", expand=True)
    for col in ("model", "window", "attribute", "DP ratio", "DP diff", "EO gap", "worst ECE"):
        summary.add_column(col)
    groups = Table(title=f"Groups — window {focus}", expand=True)
    for col in ("attribute", "group", "decisions", "SR", "DI", "TPR", "FPR", "accuracy", "ECE", "labeled"):
        groups.add_column(col, justify="right" if col not in ("attribute", "group") else "left")
    for wm in snap.windows:
        m = wm.metrics
        eces = [g.expected_calibration_error for g in m.groups if g.expected_calibration_error is not None]
        ratio = Text(_fmt(m.dp_ratio) + _ci(m.dp_ratio_ci))
        if m.dp_ratio is not None and m.dp_ratio < 0.8:
            ratio.stylize("bold red")
        summary.add_row(
            wm.model,
            wm.window,
            m.attribute,
            ratio,
            _fmt(m.dp_difference),
            _fmt(m.eo_gap) + _ci(m.eo_gap_ci),
            _fmt(max(eces) if eces else None),
        )
        if wm.window != focus:
            continue
        for g in m.groups:
            style = "dim" if not g.sufficient else ""
            di = Text(_fmt(g.disparate_impact))
            if g.disparate_impact is not None and not 0.8 <= g.disparate_impact <= 1.25:
                di.stylize("bold red")
            groups.add_row(
                m.attribute,
                g.group,
                str(g.decisions),
                _fmt(g.selection_rate),
                di,
                _fmt(g.true_positive_rate),
                _fmt(g.false_positive_rate),
                _fmt(g.accuracy),
                _fmt(g.expected_calibration_error),
                _fmt(g.labeled_share, 2),
                style=style,
            )
    if alerts is None:
        return Group(Text(header, style="bold"), summary, groups)
    return Group(Text(header, style="bold"), summary, groups, _tier_table(snap, alerts, pipelines))


_TIER_STYLE = {-1: "dim", 0: "green", 1: "yellow", 2: "bold dark_orange", 3: "bold red"}


def _tier_table(snap: Snapshot, alerts, pipelines=None) -> Table:
    """fairness_alert_tier (non-zero ones), incidents, the rollback and pipeline runs."""
    table = Table(title="Alert tiers (−1 insufficient data · 0 ok · 1..3) and incidents", expand=True)
    for col in ("model", "metric", "attribute", "windows → tier"):
        table.add_column(col)
    rows: dict[tuple[str, str, str], list[str]] = {}
    worst: dict[tuple[str, str, str], int] = {}
    for s in snap.select("fairness_alert_tier"):
        k = (s.labels["model"], s.labels["metric"], s.labels["attribute"])
        rows.setdefault(k, []).append(f"{s.labels['window']}:{int(s.value)}")
        worst[k] = max(worst.get(k, -1), int(s.value))
    for k in sorted(rows, key=lambda k: (-worst[k], k)):
        if worst[k] == 0:
            continue
        table.add_row(*k, Text(" ".join(rows[k]), style=_TIER_STYLE.get(worst[k], "")))
    for inc in alerts.incidents():
        acts = ", ".join(a["action"] + (f"={a['result']}" if "result" in a else "") for a in inc["actions"])
        table.add_row(
            inc["model"],
            inc["metric"],
            inc["attribute"],
            Text(
                f"incident {inc['status']} tier {inc['tier']} (max {inc['max_tier']}): {acts}",
                style=_TIER_STYLE.get(inc["max_tier"], ""),
            ),
        )
    if alerts.rollback is not None:
        for rec in alerts.rollback.records.values():
            v = rec.verification
            table.add_row(
                rec.model,
                "rollback",
                rec.flag,
                Text(
                    f"{rec.previous} → {rec.target}: {rec.status}"
                    + (
                        f" · rollback-version share {v['rollback_version_share']:.2f}, recovered={v['recovered']}"
                        if v.get("rollback_version_share") is not None
                        else ""
                    ),
                    style="bold green" if rec.status == "verified" else "bold",
                ),
            )
    for run in pipelines.runs.values() if pipelines is not None else ():
        style = "bold red" if run.error else ("bold green" if run.result in ("passed", "draft") else "bold")
        table.add_row(run.model, "pipeline", run.incident, Text(f"{run.run_id}: {run.status()}", style=style))
    return table


def demo_alerts(config: Config, sim: LoanSimulator, state_dir: Path, *, enqueue=None):
    """The demo's alert loop: a flagd flag file serving the candidate, rollback to the baseline,
    ``enqueue`` for the pipeline runs of Tier ≥ 2 incidents."""
    from fairwatch.alerts.config import AlertsConfig, ModelFlag
    from fairwatch.alerts.loop import AlertLoop

    flag_file = state_dir / "flags.json"
    if not flag_file.exists():
        flag_file.write_text(
            json.dumps(
                {
                    "flags": {
                        DEMO_FLAG: {
                            "state": "ENABLED",
                            "variants": {
                                sim.baseline_version: sim.baseline_version,
                                sim.candidate_version: sim.candidate_version,
                            },
                            "defaultVariant": sim.candidate_version,
                        }
                    }
                },
                indent=2,
            )
            + "\n"
        )
    base = getattr(config, "alerts", None) or AlertsConfig()
    rollback = base.rollback.model_copy(
        update={
            "flag_store": {"kind": "flagd-file", "path": str(flag_file)},
            "models": base.rollback.models or {sim.model: ModelFlag(flag=DEMO_FLAG, rollback_to=sim.baseline_version)},
            "state_path": str(state_dir / "rollback-state.json"),
        }
    )
    cfg = AlertsConfig.model_validate(
        {
            **base.model_dump(by_alias=True),
            "rollback": rollback.model_dump(),
            "audit_path": str(state_dir / "audit.jsonl"),
            "baseline_path": str(state_dir / "baselines.json"),
        }
    )
    return AlertLoop(
        cfg,
        enqueue=enqueue,
        confidence=config.confidence_level,
        interval=ALERT_STEP,
        reference_groups=dict(config.reference_groups),
    )


def advance(sim: LoanSimulator, engine: Engine, loop, seconds: float, *, on_batch=None) -> tuple[int, int]:
    """Advance the simulator by ``seconds``; with an alert loop in whole ``ALERT_STEP`` chunks.

    After each chunk the loop evaluates at the chunk's end (a multiple of ``ALERT_STEP`` of
    event time when the simulator starts on one, as ``fairwatch backtest`` does) and the
    simulator, like a serving app, serves the version the flag names. ``on_batch(batch)``
    sees every simulator batch (e.g. to record the events). Returns (decisions, outcomes).
    """
    store = loop.rollback.store if loop is not None and loop.rollback is not None else None
    n_dec = n_out = 0
    while seconds > 1e-9:
        chunk = min(seconds, ALERT_STEP) if loop is not None else seconds
        seconds -= chunk
        batch = sim.advance_batch(chunk)
        if on_batch is not None:
            on_batch(batch)
        dec, out = batch.topic_values(False), batch.topic_values(True)
        n_dec += len(dec)
        n_out += len(out)
        engine.process(decisions=dec, outcomes=out, now=sim.now)
        if loop is not None:
            loop.evaluate(engine.snapshot(now=sim.now), engine)
            served = store.current(DEMO_FLAG) if store is not None else sim.model_version
            if served != sim.model_version:
                log.warning("serving model version %s (flag %s)", served, DEMO_FLAG)
                sim.set_model_version(served)
    return n_dec, n_out


class _Stop:
    """Signal handlers only flip flags: first signal drains, second forces."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.count = 0

    def __call__(self, signum, frame) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        self.event.set()


def run_demo(
    config: Config,
    *,
    duration: float | None = None,
    interval: float = 2.0,
    live: bool = True,
    console: Console | None = None,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    state_dir: str | Path | None = None,
    alerts: bool = True,
    pipeline: bool = True,
    pipeline_dir: str | Path | None = None,
) -> int:
    """Run the simulator through the engine and the alert loop, serve metrics until stopped.

    ``state_dir`` holds the flagd flag file, audit log and baselines (default: a
    temporary directory). ``alerts=False`` runs the monitoring part only. With
    ``pipeline`` (and alerts), Tier ≥ 2 incidents start pipeline runs whose folders —
    run.json, remediation plan — go to ``pipeline_dir`` (default: ``state_dir/pipeline-runs``,
    or a kept temporary directory when ``state_dir`` is temporary).
    """
    sc = config.simulator
    sim = LoanSimulator(
        seed=sc.seed,
        rate=sc.rate,
        scenario=sc.scenario,
        drift_at=sc.drift_at,
        delay=OutcomeDelay(kind="lognormal", median_s=sc.outcome_delay, sigma=0.5),
    )
    settings = config.engine_settings()
    loop = pipelines = None
    tmp = None
    if alerts:
        if state_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="fairwatch-demo-")
            state_dir = tmp.name
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        if pipeline:
            from fairwatch.app.demo_pipeline import DemoPipeline

            if pipeline_dir is None:
                pipeline_dir = (
                    tempfile.mkdtemp(prefix="fairwatch-demo-pipeline-")
                    if tmp is not None
                    else state_dir / "pipeline-runs"
                )
            pipelines = DemoPipeline(sim, pipeline_dir)
            log.info("pipeline runs of incidents go to %s", pipeline_dir)
        loop = demo_alerts(config, sim, state_dir, enqueue=pipelines.enqueue if pipelines is not None else None)
        # the policy's fast windows (5m confirmed by 15m, …) come with config.engine_settings()
    engine = Engine(settings)
    board = SnapshotBoard()
    try:
        server, _ = serve_metrics(board, host=config.metrics.host, port=config.metrics.port, families=FAMILIES)
    except ListenError:  # nothing ran: leave no temporary directory behind
        if tmp is not None:
            tmp.cleanup()
            if pipelines is not None:
                shutil.rmtree(pipeline_dir, ignore_errors=True)
        raise
    port = server.server_port
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    console = console or Console()
    log.info(
        "demo started",
        extra={"scenario": sc.scenario, "speed": sc.speed, "rate": sc.rate, "metrics_port": port},
    )
    started = last_tick = time.monotonic()
    next_eval = started
    decisions = outcomes = 0
    pending = 0.0  # simulated seconds not yet processed

    def header() -> str:
        sim_h = (sim.now - sim.start) / 3600.0
        drift = "" if sc.scenario == "none" else f" · drift '{sc.scenario}' at {sc.drift_at / 3600:.1f} h"
        return (
            f"fairwatch demo · simulated {sim_h:6.2f} h (×{sc.speed:g}){drift} · "
            f"{decisions} decisions, {outcomes} outcomes · serving {sim.model_version} · "
            f"metrics on :{port}/metrics · Ctrl-C stops"
        )

    try:
        with Live(console=console, refresh_per_second=2, transient=False) if live else _NoLive() as view:
            while not stop.event.is_set():
                now = time.monotonic()
                if duration is not None and now - started >= duration:
                    break
                pending += (now - last_tick) * sc.speed
                last_tick = now
                # with alerts: whole ALERT_STEP chunks only (the rest waits), so evaluations fall on
                # multiples of ALERT_STEP of event time, where `fairwatch backtest` evaluates too
                step = pending if loop is None else ALERT_STEP * math.floor(pending / ALERT_STEP)
                pending -= step
                while step > 1e-9:
                    if time.monotonic() - now > interval:
                        # behind the simulated clock (shared CPU, a pipeline run): render first,
                        # catch up on the next tick — the live table never waits for the backlog
                        pending += step
                        break
                    chunk = min(step, ALERT_STEP) if loop is not None else step
                    step -= chunk
                    d, o = advance(sim, engine, loop, chunk)
                    decisions += d
                    outcomes += o
                if now >= next_eval and decisions:  # the first evaluation as soon as there is data
                    if pipelines is not None:
                        pipelines.poll()
                    snap = engine.snapshot()
                    if loop is not None:
                        snap = snap.with_samples(loop.samples())
                    board.publish(snap)
                    if on_snapshot:
                        on_snapshot(snap)
                    view.update(render(snap, header=header(), alerts=loop, pipelines=pipelines))
                    if not live:
                        log.info(
                            "evaluation",
                            extra={
                                "simulated_hours": round((sim.now - sim.start) / 3600, 2),
                                "decisions": decisions,
                                "outcomes": outcomes,
                            },
                        )
                    # until some group has enough decisions for its rates (min_decisions), look
                    # again at the next tick: the table and /metrics show numbers as soon as they exist
                    has_rates = any(x.name == "fairness_selection_rate" for x in snap.samples)
                    next_eval = now + interval if has_rates else now
                stop.event.wait(0.2)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        server.shutdown()
        server.server_close()
        if loop is not None:
            loop.close()
        if pipelines is not None:
            pipelines.close()
        if tmp is not None:
            tmp.cleanup()
        log.info("demo stopped", extra={"decisions": decisions, "outcomes": outcomes})
    return 0


class _NoLive:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, _renderable) -> None:
        return None
