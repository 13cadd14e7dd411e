"""``fairwatch replay``: JSONL files through the same engine, one final snapshot.

Decisions are read in batches; outcomes are fed in event-time order alongside
them (every outcome whose time is not after the newest decision read so far),
as they would have arrived live, so long replays join outcomes instead of
expiring their decisions first.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fairwatch.monitor.decoder import DecoderProcess
from fairwatch.monitor.decoder import start as start_decoder
from fairwatch.monitor.engine import DECISIONS_TOPIC, OUTCOMES_TOPIC, Engine, EngineSettings
from fairwatch.monitor.snapshot import Snapshot
from fairwatch.streaming.batch import OutcomeColumns, decode_outcome_batch
from fairwatch.streaming.files import DeadLetterFile, check_input, read_jsonl_batches
from fairwatch.streaming.schema import EventError, Rejection, parse_timestamp
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

__all__ = ["EventFeed", "ReplayResult", "closing_if", "file_progress", "line_time", "replay"]

log = logging.getLogger("fairwatch.replay")


@dataclass(frozen=True)
class ReplayResult:
    snapshot: Snapshot
    decisions_read: int
    outcomes_read: int
    rejected: int
    dead_letter: Path | None


def line_time(line: bytes) -> float:
    """Event time of a rejected line for ordering; unreadable ones sort first."""
    try:
        return parse_timestamp(orjson.loads(line).get("ts"))
    except (orjson.JSONDecodeError, EventError, AttributeError):
        return -math.inf


class EventFeed:
    """Event batches of a JSONL file, each decoded once (fast path): its times order the feed,
    its fields go to the engine as they are.

    ``decode(lines)`` gives ``(columns, bad)`` as :func:`decode_outcome_batch` does (for
    decisions: :func:`~fairwatch.streaming.batch.decode_decision_batch` with the engine's
    registry). A batch is decoded only once the one before is handed out completely, and
    :meth:`parts` hands out one batch's part at a time, so attribute-set ids decoded with an
    engine's registry are applied before the next decode may reset that registry.
    """

    def __init__(self, path: Path | None, batch_size: int, decode=None, topic: str = OUTCOMES_TOPIC, decoded=None):
        # ``decoded``: batches decoded elsewhere, ``(columns, [(position, rejection)], lines,
        # bytes_read)`` (a :class:`~fairwatch.monitor.decoder.DecoderProcess`), in place of the file
        self.decoded = iter(decoded) if decoded is not None else None
        self.batches = read_jsonl_batches(path, batch_size) if path and decoded is None else iter(())
        self.decode = decode or decode_outcome_batch  # default: outcomes
        self.topic = topic
        self.good = None
        self.times = np.zeros(0)  # per line, in file order
        self.slot = np.zeros(0, np.int64)  # per line: its index in ``good``, -1 if rejected
        self.rejections: dict[int, Rejection] = {}  # line index → rejection
        self.pos = 0
        self.done = 0
        self.read = 0

    def _refill(self) -> bool:
        if self.decoded is not None:
            nxt = next(self.decoded, None)
            if nxt is None:
                return False
            self.good, rejected, n, self.done = nxt
            self.rejections = dict(rejected)
        else:
            nxt = next(self.batches, None)
            if nxt is None:
                return False
            lines, meta, self.done = nxt
            self.good, bad = self.decode(lines)
            self.rejections = {j: Rejection(exc.reason, str(exc), lines[j], self.topic, *meta[j]) for j, exc in bad}
            n = len(lines)
        self.slot = np.full(n, -1, np.int64)
        ok = np.ones(n, bool)
        ok[list(self.rejections)] = False
        self.slot[ok] = np.arange(len(self.good))
        self.times = np.empty(n)
        self.times[ok] = self.good.ts
        for j, r in self.rejections.items():  # where a rejected line's time reads, it still orders the feed
            self.times[j] = line_time(r.raw)
        self.pos = 0
        return True

    def next_time(self) -> float | None:
        """Event time of the next unread line (``None`` when the file is exhausted)."""
        if self.pos >= len(self.times) and not self._refill():
            return None
        return float(self.times[self.pos])

    def parts(self, t: float) -> Iterator[tuple[Any, list[Rejection]]]:
        """The lines up to the first one later than ``t`` (the file is expected in time order),
        as ``(columns, rejections)`` per batch, in file order."""
        while True:
            if self.pos >= len(self.times) and not self._refill():
                return
            later = np.nonzero(self.times[self.pos :] > t)[0]
            j = self.pos + int(later[0]) if len(later) else len(self.times)
            slots = self.slot[self.pos : j]
            rejected = (
                [self.rejections[k] for k in range(self.pos, j) if k in self.rejections] if self.rejections else []
            )
            # without rejections line k is column row k: a slice, no copy of the lists
            part = self.good.take(slots[slots >= 0]) if self.rejections else self.good.slice(self.pos, j)
            self.read += j - self.pos
            start, self.pos = self.pos, j
            if j > start:
                yield part, rejected
            if j < len(self.times):
                return

    def until(self, t: float) -> tuple[OutcomeColumns, list[Rejection]]:
        """Outcomes with time ≤ ``t``, as one batch (see :meth:`parts`)."""
        parts: list[OutcomeColumns] = []
        rejected: list[Rejection] = []
        for part, rej in self.parts(t):
            parts.append(part)
            rejected += rej
        return OutcomeColumns.concat(parts), rejected


def file_progress(label: str, enabled: bool) -> Progress:
    """The progress bar of a command that reads files: bytes, speed, time left."""
    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )


def closing_if(decoder: DecoderProcess | None):
    """A context that closes ``decoder`` at its end (nothing without one)."""
    return contextlib.closing(decoder) if decoder else contextlib.nullcontext()


def _decisions(
    engine: Engine, path: Path, batch_size: int, decoder: DecoderProcess | None
) -> Iterator[tuple[list[Rejection], int, int]]:
    """Each batch of decision lines applied to ``engine``: ``(rejections, lines, bytes_read)``."""
    if decoder is None:
        for lines, meta, done in read_jsonl_batches(path, batch_size):
            yield engine.process(decisions=lines, decision_meta=meta), len(lines), done
        return
    for cols, rejected, n_lines, done in decoder:
        rejections = [r for _, r in rejected]
        engine.apply_decisions(cols, rejections=rejections)
        yield rejections, n_lines, done


def replay(
    decisions: str | Path,
    *,
    outcomes: str | Path | None = None,
    settings: EngineSettings | None = None,
    dead_letter: str | Path | None = None,
    batch_size: int = 10_000,
    progress: bool = True,
    parallel: bool | None = None,
) -> ReplayResult:
    """Replay JSONL files through a fresh engine and return its final snapshot.

    ``parallel``: read and decode the decisions, and the outcomes, in child processes while this
    one counts (:mod:`fairwatch.monitor.decoder`; the same result); default: where two cores are
    usable.
    """
    engine = Engine(settings)
    dpath = check_input(decisions, "--file")
    opath = check_input(outcomes, "--outcomes") if outcomes else None
    dl = DeadLetterFile(dead_letter, source=str(dpath)) if dead_letter else None
    total = dpath.stat().st_size + (opath.stat().st_size if opath else 0)
    n_dec = rejected = 0
    decoder = start_decoder(dpath, batch_size, engine.attribute_sets, DECISIONS_TOPIC, parallel)
    odecoder = start_decoder(opath, batch_size, None, OUTCOMES_TOPIC, parallel)  # outcomes: a child of their own
    feed = EventFeed(opath, batch_size, decoded=odecoder)
    with closing_if(decoder), closing_if(odecoder), file_progress("replay", progress) as bar:
        task = bar.add_task("replay", total=total)
        for rej, n_lines, done in _decisions(engine, dpath, batch_size, decoder):
            n_dec += n_lines
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
