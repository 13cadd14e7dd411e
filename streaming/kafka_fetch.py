"""kafka-python's fetching in a child process, so decoding records and the engine use two cores.

kafka-python parses record batches in pure Python in the thread that polls:
about 7.6 µs per record here, more than the whole engine spends on it. With
``kafka.fetch_process: true`` (opt-in; off by default) the
daemon's own consumer stays the group member — it is subscribed, runs the
rebalance callbacks, commits the offsets of durable checkpoints and measures
lag — but keeps every assigned partition paused. A child process
(``python -m streaming.kafka_fetch``) with its own group-less consumer fetches
exactly the partitions it is told, from exactly the offsets it is told, and
writes the raw records to its stdout as frames. Nothing about correctness moves
to the child:

* every assignment gets a new *generation*; frames of an older one are dropped,
  so nothing fetched before a rebalance is applied after it;
* the daemon applies records strictly by offset (``Daemon._fresh``): a repeated
  record is a no-op, a gap restarts from the checkpoint;
* commits still only follow durable checkpoints, from the parent;
* the child dies with its parent: end of stdin, a broken stdout, or a new
  parent process id each end it.

Commands (stdin, one JSON object per line): first the consumer options
``{"options": {...}, "topics": [decisions, outcomes], "max_poll_records": n}``,
then ``{"generation": g, "assign": [[topic, partition, next_offset | null], ...]}``
(``null``: from the beginning).

A frame (stdout): ``<q b i I``: generation, topic index (0 decisions, 1
outcomes), partition, record count *n*; then *n* little-endian int64 offsets,
*n* int32 value lengths (−1: no value) and the values back to back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter

import numpy as np

__all__ = ["FetchProcess", "Frame", "FetchProcessError"]

log = logging.getLogger("fairwatch.kafka")

HEADER = struct.Struct("<qbiI")


class FetchProcessError(RuntimeError):
    """The fetch process is gone or wrote something that is not a frame."""


@dataclass(slots=True)
class Frame:
    generation: int
    topic: int  # 0 decisions, 1 outcomes
    partition: int
    offsets: list[int]
    values: list[bytes]


class FetchProcess:
    """The parent's handle: start, (re)assign, read frames, stop."""

    def __init__(self, *, options: dict, topics: tuple[str, str], max_poll_records: int):
        self.topics = topics
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streaming.kafka_fetch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            # the same modules as this process, wherever it was started from
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        self.fd = self.proc.stdout.fileno()
        self.generation = 0
        self.closed = False
        self._send({"options": options, "topics": list(topics), "max_poll_records": max_poll_records})

    def _send(self, command: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        except OSError as exc:
            raise FetchProcessError(f"fetch process is gone (exit code {self.proc.poll()}): {exc}") from exc

    def assign(self, partitions: list[tuple[str, int, int | None]]) -> int:
        """Fetch these (topic, partition, next offset or ``None`` = beginning) from now on."""
        self.generation += 1
        if self.closed:
            return self.generation
        self._send({"generation": self.generation, "assign": [list(p) for p in partitions]})
        return self.generation

    def _read(self, n: int) -> bytes:
        parts, need = [], n
        while need:
            chunk = os.read(self.fd, need)
            if not chunk:
                raise FetchProcessError(f"fetch process ended (exit code {self.proc.poll()})")
            parts.append(chunk)
            need -= len(chunk)
        return b"".join(parts)

    def frames(self, timeout_s: float, budget: int) -> Iterator[Frame]:
        """Frames of the current generation, waiting up to ``timeout_s`` for the first,
        then as long as more are ready and fewer than ``budget`` records were read."""
        wait, seen = timeout_s, 0
        while seen < budget and select.select([self.fd], [], [], wait)[0]:
            wait = 0.0
            generation, topic, partition, n = HEADER.unpack(self._read(HEADER.size))
            offsets = np.frombuffer(self._read(8 * n), "<i8")
            lengths = np.frombuffer(self._read(4 * n), "<i4")
            payload = self._read(int(np.maximum(lengths, 0).sum()))
            if generation != self.generation:
                continue  # fetched for an assignment that no longer holds
            ends = np.cumsum(np.maximum(lengths, 0)).tolist()
            starts = [0, *ends[:-1]]
            values = list(map(payload.__getitem__, map(slice, starts, ends)))
            seen += n
            yield Frame(generation, topic, partition, offsets.tolist(), values)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


# -- the child -------------------------------------------------------------------------


_VALUE, _OFFSET = attrgetter("value"), attrgetter("offset")


def _frame(generation: int, topic: int, partition: int, records) -> bytes:
    n = len(records)
    values = list(map(_VALUE, records))
    if None in values:
        lengths = np.array([-1 if v is None else len(v) for v in values], "<i4")
        values = [v or b"" for v in values]
    else:
        lengths = np.fromiter(map(len, values), "<i4", n)
    offsets = np.fromiter(map(_OFFSET, records), "<i8", n)
    return b"".join([HEADER.pack(generation, topic, partition, n), offsets.tobytes(), lengths.tobytes(), *values])


def _child() -> int:
    from kafka import KafkaConsumer, TopicPartition

    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    out = sys.stdout.buffer
    parent = os.getppid()
    pending = b""

    def commands(wait: float) -> Iterator[dict] | None:
        """Commands that arrived; ``None`` at end of input (the parent is gone)."""
        nonlocal pending
        got = []
        while select.select([stdin], [], [], wait)[0]:
            wait = 0.0
            chunk = os.read(stdin.fileno(), 1 << 16)
            if not chunk:
                return None
            pending += chunk
            *lines, pending = pending.split(b"\n")
            got += [json.loads(line) for line in lines if line.strip()]
        return iter(got)

    first, backlog = None, []
    while first is None:
        cmds = commands(1.0)
        if cmds is None:
            return 0
        backlog = list(cmds)
        first = backlog.pop(0) if backlog else None
    topics = first["topics"]
    max_records = int(first["max_poll_records"])
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **first["options"])
    generation = -1
    # A writer thread: while the parent is busy and the pipe is full, this thread keeps
    # fetching (the blocked write releases the GIL). Bounded: a few frames in flight.
    frames: queue.Queue = queue.Queue(maxsize=4)
    broken = threading.Event()

    def writer() -> None:
        try:
            while (frame := frames.get()) is not None:
                out.write(frame)
                out.flush()
        except (BrokenPipeError, OSError):
            broken.set()

    threading.Thread(target=writer, name="fairwatch-fetch-writer", daemon=True).start()
    try:
        while True:
            cmds = commands(0.0 if consumer.assignment() else 0.2)
            if cmds is None or os.getppid() != parent or broken.is_set():
                return 0
            for cmd in [*backlog, *cmds]:
                generation = cmd["generation"]
                tps = [(TopicPartition(t, p), off) for t, p, off in cmd["assign"]]
                consumer.assign([tp for tp, _ in tps])
                for tp, off in tps:
                    if off is None:
                        consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, off)
            backlog = []
            if not consumer.assignment():
                continue
            records = consumer.poll(timeout_ms=200, max_records=max_records)
            for tp, recs in records.items():
                if recs:
                    frame = _frame(generation, topics.index(tp.topic), tp.partition, recs)
                    while not broken.is_set():
                        try:
                            frames.put(frame, timeout=0.5)
                            break
                        except queue.Full:
                            if os.getppid() != parent:
                                return 0
    except BrokenPipeError:
        return 0
    finally:
        with contextlib.suppress(Exception):  # the broker may be gone; the parent decides what that means
            consumer.close(autocommit=False)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(_child())
