"""``fairwatch replay``: JSONL files through the same engine, one final snapshot.

Decisions are read in batches; outcomes are fed in event-time order alongside
them (every outcome whose time is not after the newest decision read so far),
as they would have arrived live, so long replays join outcomes instead of
expiring their decisions first.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import orjson
from fairwatch.monitor.engine import Engine, EngineSettings
from fairwatch.monitor.snapshot import Snapshot
from fairwatch.streaming.events import EventError, parse_timestamp
from fairwatch.streaming.files import DeadLetterFile, read_jsonl_batches
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

__all__ = ["ReplayResult", "replay"]

log = logging.getLogger("fairwatch.replay")


@dataclass(frozen=True)
class ReplayResult:
    snapshot: Snapshot
    decisions_read: int
    outcomes_read: int
    rejected: int
    dead_letter: Path | None


def _outcome_time(line: bytes) -> float:
    """Event time of an outcome line for ordering; unreadable lines sort first (and get rejected)."""
    try:
        return parse_timestamp(orjson.loads(line).get("ts"))
    except (orjson.JSONDecodeError, EventError, AttributeError):
        return -math.inf


class _OutcomeFeed:
    def __init__(self, path: Path | None, batch_size: int):
        self.batches = read_jsonl_batches(path, batch_size) if path else iter(())
        self.lines: list[bytes] = []
        self.meta: list[tuple[int, int]] = []
        self.times: list[float] = []
        self.pos = 0
        self.done = 0
        self.read = 0

    def _refill(self) -> bool:
        nxt = next(self.batches, None)
        if nxt is None:
            return False
        self.lines, self.meta, self.done = nxt
        self.times = [_outcome_time(x) for x in self.lines]
        self.pos = 0
        return True

    def until(self, t: float) -> tuple[list[bytes], list[tuple[int, int]]]:
        """Outcomes with time ≤ ``t`` (in file order; the file is expected in time order)."""
        out: list[bytes] = []
        meta: list[tuple[int, int]] = []
        while True:
            if self.pos >= len(self.lines) and not self._refill():
                break
            j = self.pos
            while j < len(self.lines) and self.times[j] <= t:
                j += 1
            out.extend(self.lines[self.pos : j])
            meta.extend(self.meta[self.pos : j])
            self.pos = j
            if j < len(self.lines):
                break
        self.read += len(out)
        return out, meta


def replay(
    decisions: str | Path,
    *,
    outcomes: str | Path | None = None,
    settings: EngineSettings | None = None,
    dead_letter: str | Path | None = None,
    batch_size: int = 10_000,
    progress: bool = True,
) -> ReplayResult:
    """Replay JSONL files through a fresh engine and return its final snapshot."""
    engine = Engine(settings)
    dpath = Path(decisions)
    opath = Path(outcomes) if outcomes else None
    for p, field in ((dpath, "--file"), (opath, "--outcomes")):
        if p is not None and not p.is_file():
            raise FileNotFoundError(f"{field}: no such file {str(p)!r}")
    dl = DeadLetterFile(dead_letter, source=str(dpath)) if dead_letter else None
    feed = _OutcomeFeed(opath, batch_size)
    total = dpath.stat().st_size + (opath.stat().st_size if opath else 0)
    n_dec = rejected = 0
    with Progress(
        TextColumn("[bold]replay[/]"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=total)
        for lines, meta, done in read_jsonl_batches(dpath, batch_size):
            n_dec += len(lines)
            rej = engine.process(decisions=lines, decision_meta=meta)
            newest = max((st.max_ts for st in engine.models.values()), default=-math.inf)
            outs, ometa = feed.until(newest)
            if outs:
                rej += engine.process(outcomes=outs, outcome_meta=ometa)
            rejected += len(rej)
            if dl:
                dl.write(rej)
            bar.update(task, completed=done + feed.done)
        outs, ometa = feed.until(math.inf)
        if outs:
            rej = engine.process(outcomes=outs, outcome_meta=ometa)
            rejected += len(rej)
            if dl:
                dl.write(rej)
        bar.update(task, completed=total)
    if dl:
        dl.close()
    snap = engine.snapshot()
    log.info(
        "replay finished",
        extra={"decisions": n_dec, "outcomes": feed.read, "rejected": rejected, "pid": os.getpid()},
    )
    return ReplayResult(snap, n_dec, feed.read, rejected, dl.path if dl and dl.count else None)
