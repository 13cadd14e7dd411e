"""Event batches of a JSONL file read and decoded in a child process (a second core).

``fairwatch replay`` spends about as long reading and decoding decision lines as the engine
spends counting them, so on a machine with two cores a forked child does the first half:
:func:`read_jsonl_batches` and :func:`decode_decision_batch` with its own attribute-set
registry, then sends each batch's columns and rejections through a pipe (pickled, about
0.3 µs a decision to write and 0.1 µs to read). The parent maps the child's attribute-set
ids onto its engine's registry (the child sends each new set once, with the registry's
generation) and applies the columns as :meth:`Engine.apply_decisions` does: the same
counts as :meth:`Engine.process` over the raw lines (a tested property).

Outcome files get a child of their own (``registry=None``): it sends
:class:`OutcomeColumns` as :func:`decode_outcome_batch` gives them, so the parent only joins.

Where ``fork`` is not available, or one core is all the process may use, the caller reads
and decodes in its own process instead (:func:`available`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from fairwatch.streaming.batch import (
    AttributeRegistry,
    DecisionColumns,
    OutcomeColumns,
    decode_decision_batch,
    decode_outcome_batch,
)
from fairwatch.streaming.files import read_jsonl_batches
from fairwatch.streaming.schema import Rejection

__all__ = ["DecoderProcess", "available", "start"]

#: the columns sent through the pipe (every field of :class:`DecisionColumns` but its registry)
_FIELDS = tuple(f.name for f in dataclasses.fields(DecisionColumns) if f.name != "registry")
_OUTCOME_FIELDS = tuple(f.name for f in dataclasses.fields(OutcomeColumns))
#: string columns that usually hold one value for the whole batch (one model, one live version)
_REPEATED = frozenset({"models", "versions"})


def _pack(column, field: str):
    """A column as sent: a model or version column of one value as ``(value, length)`` (one
    string to pickle instead of one per event), anything else as it is."""
    if field in _REPEATED and column and column.count(column[0]) == len(column):
        return (column[0], len(column))
    return column


def _unpack(column):
    """The column :func:`_pack` sent (a repeated value as a list of the one string)."""
    return [column[0]] * column[1] if type(column) is tuple else column


def available() -> bool:
    """Whether a decoder process can run beside this one: ``fork`` and at least two usable cores."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return cores >= 2


def _work(path: str, batch_size: int, topic: str, limit: int | None, conn) -> None:
    """The child: every batch of the file decoded (decisions with an attribute-set registry of
    ``limit`` sets; outcomes where ``limit`` is ``None``), sent as ``("batch", …)``; then ``("end",)``."""
    try:
        reg = AttributeRegistry(limit) if limit is not None else None
        generation, sent = 0, 0
        for lines, meta, done in read_jsonl_batches(path, batch_size):
            keys: list[tuple] = []
            if reg is None:
                good, bad = decode_outcome_batch(lines)
                cols: tuple = tuple(_pack(getattr(good, f), f) for f in _OUTCOME_FIELDS)
            else:
                good, bad = decode_decision_batch(lines, registry=reg)
                if reg.generation != generation:  # the registry was reset before this batch
                    generation, sent = reg.generation, 0
                keys = [reg.key(i) for i in range(sent, len(reg))]
                sent = len(reg)
                cols = tuple(_pack(getattr(good, f), f) for f in _FIELDS)
            rejected = [(j, Rejection(exc.reason, str(exc), lines[j], topic, *meta[j])) for j, exc in bad]
            conn.send_bytes(pickle.dumps(("batch", generation, keys, len(lines), done, cols, rejected), protocol=5))
        conn.send_bytes(pickle.dumps(("end",)))
    except BaseException as exc:  # noqa: BLE001 — everything goes to the parent, which raises it
        try:
            conn.send_bytes(pickle.dumps(("error", exc)))
        except Exception:  # an exception that does not pickle: its text
            conn.send_bytes(pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}"))))
    finally:
        conn.close()


def start(
    path: str | Path | None,
    batch_size: int,
    registry: AttributeRegistry | None,
    topic: str,
    parallel: bool | None,
) -> DecoderProcess | None:
    """A decoder process for ``path`` if ``parallel`` (``None``: where :func:`available`), else
    ``None`` (also without a ``path``). ``registry``: the engine's, for decisions; ``None`` for
    outcomes. Start it before any other thread: a fork copies only the thread that forks."""
    use = available() if parallel is None else parallel
    return DecoderProcess(path, batch_size, registry, topic) if use and path is not None else None


class DecoderProcess:
    """Iterate ``(columns, [(position, rejection)], lines, bytes_read)`` per batch of ``path``,
    decoded by a child process; decision ``columns`` use ``registry`` (the engine's own;
    ``None``: the file holds outcomes, ``columns`` are :class:`OutcomeColumns`). A batch is
    received (and the registry possibly reset, as between two decodes) only when the next one
    is asked for: apply each batch's columns before asking."""

    def __init__(self, path: str | Path, batch_size: int, registry: AttributeRegistry | None, topic: str):
        self.registry = registry
        self._kind = "outcome" if registry is None else "decision"
        for stream in (sys.stdout, sys.stderr):  # else the child could write their buffers again
            if stream is not None:
                stream.flush()
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_work,
            args=(str(path), batch_size, topic, None if registry is None else registry.limit, child),
            name="fairwatch-decoder",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._keys: list[tuple] = []  # the child's set id → attribute set, this generation
        self._generation = 0
        self._remap = np.zeros(0, np.int64)  # the child's set id → the registry's, -1 unknown
        self._ours = 0 if registry is None else registry.generation

    def __iter__(self) -> Iterator[tuple[DecisionColumns | OutcomeColumns, list[tuple[int, Rejection]], int, int]]:
        while True:
            try:
                msg = pickle.loads(self._conn.recv_bytes())
            except EOFError:
                code = self._proc.exitcode
                raise RuntimeError(
                    f"the {self._kind} decoder process ended without finishing (exit code {code})"
                ) from None
            if msg[0] == "end":
                return
            if msg[0] == "error":
                raise msg[1]
            _, generation, keys, n_lines, done, cols, rejected = msg
            cols = tuple(map(_unpack, cols))
            if self.registry is None:
                yield OutcomeColumns(*cols), rejected, n_lines, done
            else:
                yield self._columns(generation, keys, cols), rejected, n_lines, done

    def _columns(self, generation: int, keys: list[tuple], cols: tuple) -> DecisionColumns:
        reg = self.registry
        reg.reset_if_full()  # between batches, as decode_decision_batch does
        if generation != self._generation:
            self._generation, self._keys = generation, []
            self._remap = np.zeros(0, np.int64)
        if reg.generation != self._ours:  # our registry was reset: every mapping is stale
            self._ours = reg.generation
            self._remap[:] = -1
        self._keys += keys
        if len(self._remap) < len(self._keys):
            self._remap = np.concatenate([self._remap, np.full(len(self._keys) - len(self._remap), -1, np.int64)])
        sets = cols[_FIELDS.index("sets")]
        if len(sets):
            uniq = np.unique(sets)
            for i in uniq[self._remap[uniq] < 0].tolist():
                self._remap[i] = reg.id_of(self._keys[i])
            sets = self._remap[sets]
        fields = dict(zip(_FIELDS, cols, strict=True))
        fields["sets"] = sets
        return DecisionColumns(reg, **fields)

    def close(self) -> None:
        """Stop the child (if it is still running) and release the pipe."""
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join(timeout=5)
        self._conn.close()
