"""File source and dead-letter file: JSONL in, rejected events with their reasons out."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from itertools import compress, repeat
from pathlib import Path

import numpy as np
import orjson
from fairwatch.streaming.events import Rejection

__all__ = ["read_jsonl_batches", "DeadLetterFile"]


def read_jsonl_batches(
    path: str | Path, batch_size: int = 10_000, *, chunk_bytes: int = 8 << 20
) -> Iterator[tuple[list[bytes], list[tuple[int, int]], int]]:
    """Yield ``(lines, meta, bytes_read)`` batches; meta is (0, line number) per event.

    Blank lines are skipped; every other line is an event, valid or not (without its
    trailing ``\r``/``\n``). ``bytes_read`` counts the file up to the batch's last line.
    The file is read in chunks of ``chunk_bytes`` and split, stripped and filtered by
    C-level loops (``bytes.split``, ``map``, ``itertools.compress``): no bytecode per line.
    """
    lines: list[bytes] = []
    meta: list[tuple[int, int]] = []
    ends: list[int] = []  # per kept line: bytes of the file through it
    offset = lineno = 0
    tail = b""
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(chunk_bytes)
            if chunk:
                raws = (tail + chunk).split(b"\n")
                tail = raws.pop()  # the unfinished last line (b"" after a newline)
            else:
                raws, tail = ([tail], b"") if tail else ([], b"")
            if raws:
                sizes = np.fromiter(map(len, raws), np.int64, len(raws)) + (1 if chunk else 0)  # + newline
                stripped = list(map(bytes.rstrip, raws, repeat(b"\r\n")))
                keep = list(map(bytes.strip, stripped))
                mask = np.fromiter(map(bool, keep), bool, len(raws))
                lines += compress(stripped, keep)
                meta += zip(repeat(0), (np.nonzero(mask)[0] + (lineno + 1)).tolist())
                ends += (offset + np.cumsum(sizes))[mask].tolist()
                offset += int(sizes.sum())
                lineno += len(raws)
            while len(lines) >= batch_size:
                yield lines[:batch_size], meta[:batch_size], ends[batch_size - 1]
                del lines[:batch_size], meta[:batch_size], ends[:batch_size]
            if not chunk:
                break
    if lines:
        yield lines, meta, offset


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
