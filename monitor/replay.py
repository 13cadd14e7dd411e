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

import numpy as np
import orjson
from fairwatch.monitor.engine import OUTCOMES_TOPIC, Engine, EngineSettings
from fairwatch.monitor.snapshot import Snapshot
from fairwatch.streaming.batch import OutcomeColumns, decode_outcome_batch
from fairwatch.streaming.files import DeadLetterFile, read_jsonl_batches
from fairwatch.streaming.schema import EventError, Rejection, parse_timestamp
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
    """Event time of a rejected outcome line for ordering; unreadable ones sort first."""
    try:
        return parse_timestamp(orjson.loads(line).get("ts"))
    except (orjson.JSONDecodeError, EventError, AttributeError):
        return -math.inf


class _OutcomeFeed:
    """Outcome batches, each decoded once (fast path): its times order the feed, its
    fields go to the engine as they are."""

    def __init__(self, path: Path | None, batch_size: int):
        self.batches = read_jsonl_batches(path, batch_size) if path else iter(())
        self.good = OutcomeColumns.from_rows(())
        self.times = np.zeros(0)  # per line, in file order
        self.slot = np.zeros(0, np.int64)  # per line: its index in ``good``, -1 if rejected
        self.rejections: dict[int, Rejection] = {}  # line index → rejection
        self.pos = 0
        self.done = 0
        self.read = 0

    def _refill(self) -> bool:
        nxt = next(self.batches, None)
        if nxt is None:
            return False
        lines, meta, self.done = nxt
        self.good, bad = decode_outcome_batch(lines)
        self.rejections = {j: Rejection(exc.reason, str(exc), lines[j], OUTCOMES_TOPIC, *meta[j]) for j, exc in bad}
        self.slot = np.full(len(lines), -1, np.int64)
        ok = np.ones(len(lines), bool)
        ok[list(self.rejections)] = False
        self.slot[ok] = np.arange(len(self.good))
        self.times = np.empty(len(lines))
        self.times[ok] = self.good.ts
        for j in self.rejections:  # where a rejected line's time reads, it still orders the feed
            self.times[j] = _outcome_time(lines[j])
        self.pos = 0
        return True

    def until(self, t: float) -> tuple[OutcomeColumns, list[Rejection]]:
        """Outcomes with time ≤ ``t`` (in file order; the file is expected in time order)."""
        parts: list[OutcomeColumns] = []
        rejected: list[Rejection] = []
        while True:
            if self.pos >= len(self.times) and not self._refill():
                break
            later = np.nonzero(self.times[self.pos :] > t)[0]
            j = self.pos + int(later[0]) if len(later) else len(self.times)
            slots = self.slot[self.pos : j]
            parts.append(self.good.take(slots[slots >= 0]))
            if self.rejections:
                rejected += [self.rejections[k] for k in range(self.pos, j) if k in self.rejections]
            self.read += j - self.pos
            self.pos = j
            if j < len(self.times):
                break
        return OutcomeColumns.concat(parts), rejected


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
            outs, orej = feed.until(newest)
            engine.apply_outcomes(outs, rejections=orej)
            rej += orej
            rejected += len(rej)
            if dl:
                dl.write(rej)
            bar.update(task, completed=done + feed.done)
        outs, rej = feed.until(math.inf)
        engine.apply_outcomes(outs, rejections=rej)
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
