"""``fairwatch demo``: the built-in loan simulator → engine → Prometheus exporter, live.

The simulated clock runs ``speed`` times faster than the wall clock, so the
windows fill within minutes and the scenario's drift incident (by default a
drop of one group's approval rate two simulated hours in) shows up while you
watch. Ctrl-C stops cleanly (a second Ctrl-C forces).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from monitor.config import Config
from monitor.engine import Engine
from monitor.exporter import serve_metrics
from monitor.snapshot import Snapshot, SnapshotBoard
from streaming.simulator import LoanSimulator, OutcomeDelay

__all__ = ["run_demo", "render"]

log = logging.getLogger("fairwatch.demo")


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def render(snap: Snapshot, *, header: str = "", window: str | None = None) -> Group:
    """The live view: between-group metrics per window, and per-group rates for one window."""
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
    return Group(Text(header, style="bold"), summary, groups)


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
) -> int:
    """Run the simulator through the engine and serve metrics until stopped."""
    sc = config.simulator
    sim = LoanSimulator(
        seed=sc.seed,
        rate=sc.rate,
        scenario=sc.scenario,
        drift_at=sc.drift_at,
        delay=OutcomeDelay(kind="lognormal", median_s=sc.outcome_delay, sigma=0.5),
    )
    engine = Engine(config.engine_settings())
    board = SnapshotBoard()
    server, _ = serve_metrics(board, host=config.metrics.host, port=config.metrics.port)
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

    def header() -> str:
        sim_h = (sim.now - sim.start) / 3600.0
        drift = "" if sc.scenario == "none" else f" · drift '{sc.scenario}' at {sc.drift_at / 3600:.1f} h"
        return (
            f"fairwatch demo · simulated {sim_h:6.2f} h (×{sc.speed:g}){drift} · "
            f"{decisions} decisions, {outcomes} outcomes · metrics on :{port}/metrics · Ctrl-C stops"
        )

    try:
        with Live(console=console, refresh_per_second=2, transient=False) if live else _NoLive() as view:
            while not stop.event.is_set():
                now = time.monotonic()
                if duration is not None and now - started >= duration:
                    break
                step = (now - last_tick) * sc.speed
                last_tick = now
                if step > 0:
                    batch = sim.advance_batch(step)
                    dec, out = batch.topic_values(False), batch.topic_values(True)
                    decisions += len(dec)
                    outcomes += len(out)
                    engine.process(decisions=dec, outcomes=out, now=sim.now)
                if now >= next_eval:
                    snap = engine.snapshot()
                    board.publish(snap)
                    if on_snapshot:
                        on_snapshot(snap)
                    view.update(render(snap, header=header()))
                    if not live:
                        log.info("evaluation", extra={"simulated_hours": round((sim.now - sim.start) / 3600, 2), "decisions": decisions, "outcomes": outcomes})
                    next_eval = now + interval
                stop.event.wait(0.2)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        server.shutdown()
        server.server_close()
        log.info("demo stopped", extra={"decisions": decisions, "outcomes": outcomes})
    return 0


class _NoLive:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, _renderable) -> None:
        return None
