"""File source and dead-letter file: JSONL in, rejected events with their reasons out."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import orjson
from fairwatch.streaming.events import Rejection

__all__ = ["read_jsonl_batches", "DeadLetterFile"]


def read_jsonl_batches(
    path: str | Path, batch_size: int = 10_000
) -> Iterator[tuple[list[bytes], list[tuple[int, int]], int]]:
    """Yield ``(lines, meta, bytes_read)`` batches; meta is (0, line number) per event.

    Blank lines are skipped; every other line is an event, valid or not.
    """
    lines: list[bytes] = []
    meta: list[tuple[int, int]] = []
    done = 0
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            done += len(line)
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            lines.append(line)
            meta.append((0, lineno))
            if len(lines) >= batch_size:
                yield lines, meta, done
                lines, meta = [], []
    if lines:
        yield lines, meta, done


class DeadLetterFile:
    """Appends rejected events as JSON lines; the file is created on the first rejection."""

    def __init__(self, path: str | Path, *, source: str = ""):
        self.path = Path(path)
        self.source = source
        self.count = 0
        self._fh = None

    def write(self, rejections: list[Rejection]) -> None:
        if not rejections:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - held open across batches, closed in close()
        for r in rejections:
            try:
                text = r.raw.decode("utf-8")
                raw = {"raw": text}
            except UnicodeDecodeError:
                raw = {"raw_base64": base64.b64encode(r.raw).decode()}
            self._fh.write(
                orjson.dumps(
                    {
                        "reason": r.reason,
                        "message": r.message,
                        "topic": r.topic,
                        "partition": r.partition,
                        "offset": r.offset,
                        "source": self.source,
                        **raw,
                    }
                )
                + b"\n"
            )
        self._fh.flush()
        self.count += len(rejections)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
