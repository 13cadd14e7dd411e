"""Per-partition statistics and their merge: one model on many partitions and replicas.

A producer that keys decisions by decision id spreads every model over every partition
of the topic. Each source partition therefore keeps **its own** engine state
(:class:`PartitionEngines`): its checkpoint holds exactly that partition's counts and join
store, and moves with the partition on a rebalance. What the evaluator needs of a
partition is only its window statistics — a *partial*: per model the group table, the
totals and the bucket rings (no join store), bounded by windows × buckets × groups × bins
and independent of traffic. Partials are exact integer counts (and float64 score sums),
so :func:`merge` adds them: the merged engine is what one engine reading every partition
would hold, as long as no event was late for the whole stream but not for its partition
(per-partition watermarks; see ``docs/replicas.md``).

>>> import orjson
>>> from fairwatch.monitor.engine import EngineSettings
>>> from fairwatch.streaming.events import DECISION_SCHEMA
>>> settings = EngineSettings(windows=("1h",), min_decisions=1, min_labeled=1)
>>> engines = PartitionEngines(settings)
>>> for i in range(8):  # keyed by decision id: the model is on both partitions
...     raw = orjson.dumps({"schema": DECISION_SCHEMA, "decision_id": f"d{i}", "model": "m",
...         "model_version": "v1", "ts": 1.8e9 + i, "score": 0.5, "decision": int(i < 3),
...         "attributes": {"sex": "F"}})
...     _ = engines[i % 2].process(decisions=[raw])
>>> merged = merge([read_partial(partial_blob(e)) for e in engines.values()], settings)
>>> merged.snapshot().value("fairness_selection_rate", window="1h", attribute="sex", group="F")
0.375
"""

from __future__ import annotations

import dataclasses
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import orjson
from fairwatch.monitor.engine import Engine, EngineSettings
from fairwatch.monitor.engine_state import ModelState
from fairwatch.monitor.groups import GroupTable
from fairwatch.monitor.samples import VERSION, counter_samples
from fairwatch.monitor.snapshot import Sample

__all__ = [
    "PARTIAL",
    "PartitionEngines",
    "Partial",
    "partial_blob",
    "partial_of",
    "read_partial",
    "merge",
    "local_samples",
    "merged_gauges",
]

#: Checkpoint key suffix of a partition's partial (saved in the checkpoint's transaction).
PARTIAL = "/partial"
PARTIAL_FORMAT = 2
_TABLE = ("dec", "lab", "cal_n", "cal_s", "cal_l")

#: One partition's statistics of one model: (arrays, meta) as :meth:`ModelState.to_state`
#: gives them, without the join store.
Partial = tuple[dict[str, np.ndarray], dict]


class PartitionEngines(Mapping[int, Engine]):
    """One :class:`Engine` per source partition (created on first use), sharing settings and observer."""

    def __init__(self, settings: EngineSettings, observer=None):
        self.settings = settings
        self.observer = observer
        self._engines: dict[int, Engine] = {}

    def __getitem__(self, partition: int) -> Engine:
        engine = self._engines.get(partition)
        if engine is None:
            engine = self._engines[partition] = Engine(self.settings, observer=self.observer)
        return engine

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._engines))

    def __len__(self) -> int:
        return len(self._engines)

    def __contains__(self, partition: object) -> bool:
        return partition in self._engines

    def pop(self, partition: int) -> Engine | None:
        return self._engines.pop(partition, None)

    @property
    def events(self) -> Counter:
        """The events ledger of every partition, summed."""
        total: Counter = Counter()
        for e in self._engines.values():
            total.update(e.events)
        return total


def partial_of(engine: Engine) -> list[Partial]:
    """Copies of one partition engine's window statistics, per model (no join store).

    Rings keep only their slots that hold counts (``ring<i>.slot`` and ``ring<i>.bucket``
    say which slot and bucket): a partition's partial grows with the buckets it has data
    in, not with the ring's full size.
    """
    out = []
    for name in sorted(engine.models):
        st = engine.models[name]
        arrays = {f"totals.{n}": a.copy() for n, a in zip(_TABLE, st.totals.arrays(), strict=True)}
        rings = []
        for i, r in enumerate(st.rings):
            t = r.table
            used = np.nonzero(t.dec.reshape(r.slots, -1).any(axis=1) | t.lab.reshape(r.slots, -1).any(axis=1))[0]
            arrays[f"ring{i}.slot"] = used
            arrays[f"ring{i}.bucket"] = r.bucket_of_slot[used]
            for n, a in zip(_TABLE, t.arrays(), strict=True):
                arrays[f"ring{i}.{n}"] = a[used]
            rings.append({"window": r.spec.name, "slots": r.slots, "head": r.head})
        meta = {
            "model": name,
            "groups": st.groups.to_state(),
            "rings": rings,
            "max_ts": None if st.max_ts == -np.inf else st.max_ts,
            "last_expiry": None if st.last_expiry == -np.inf else st.last_expiry,
            "versions": dict(st.versions),
        }
        out.append((arrays, meta))
    return out


def partial_blob(engine: Engine) -> bytes:
    """A partition's partial as one blob (what a replica publishes with each checkpoint).

    Flat, not ``.npz``: a JSON header (metadata, and per array its name, dtype, shape and
    byte offset) then every array's bytes, zlib level 1 over all of it. Reading it is one
    decompress and a zero-copy ``np.frombuffer`` per array; an ``.npz`` opens a zip member
    per array, which made unpacking 8 ms of a 9 ms evaluation per partition (measured by
    ``benchmarks/partials_merge.py``). Most calibration cells are zero: zlib shrinks it ~10×.
    """
    index = []
    chunks = []
    offset = 0
    metas = []
    for i, (arrays, meta) in enumerate(partial_of(engine)):
        metas.append(meta)
        for name, a in arrays.items():
            a = np.ascontiguousarray(a)
            index.append([f"m{i}.{name}", a.dtype.str, list(a.shape), offset])
            chunks.append(a.tobytes())
            offset += a.nbytes
    header = orjson.dumps({"partial": PARTIAL_FORMAT, "models": metas, "arrays": index})
    return zlib.compress(len(header).to_bytes(4, "little") + header + b"".join(chunks), 1)


def read_partial(blob: bytes) -> list[Partial]:
    raw = zlib.decompress(blob)
    size = int.from_bytes(raw[:4], "little")
    meta = orjson.loads(raw[4 : 4 + size])
    if meta.get("partial") != PARTIAL_FORMAT:
        raise ValueError(f"partial format {meta.get('partial')!r}, this fairwatch reads {PARTIAL_FORMAT}")
    body = memoryview(raw)[4 + size :]
    out: list[Partial] = [({}, m) for m in meta["models"]]
    for name, dtype, shape, offset in meta["arrays"]:
        i, _, key = name.partition(".")
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        out[int(i[1:])][0][key] = np.frombuffer(body, dt, count, offset).reshape(shape)
    return out


def _add(dst: np.ndarray, src: np.ndarray, groups: np.ndarray, unique: bool, lead: np.ndarray | None) -> None:
    """``dst[lead, groups[g]] += src[g]`` (groups repeat only on overflow into "other")."""
    index = groups if lead is None else (lead[:, None], groups[None, :])
    if unique:
        dst[index] += src
    else:
        np.add.at(dst, index, src)


def merge(partitions: Iterable[list[Partial]], settings: EngineSettings) -> Engine:
    """One engine holding the sum of every partition's statistics (gauges and evidence read it).

    Rings are aligned on the newest head of all partitions: a slot counts when it holds the
    bucket that the merged ring holds in it, so every window covers the same buckets as one
    engine reading the whole stream. Join stores are not merged (their counters stay per replica).
    """
    settings = dataclasses.replace(settings, join_spill_path=None)
    by_model: dict[str, list[Partial]] = {}
    for parts in partitions:
        for arrays, meta in parts:
            by_model.setdefault(meta["model"], []).append((arrays, meta))
    engine = Engine(settings)
    for model, parts in sorted(by_model.items()):
        engine.models[model] = _merge_model(model, parts, settings)
    return engine


def _merge_model(model: str, parts: list[Partial], settings: EngineSettings) -> ModelState:
    st = ModelState(model, settings)
    saved = [(r["window"], r["slots"]) for r in parts[0][1]["rings"]]
    for _, meta in parts:
        theirs = [(r["window"], r["slots"]) for r in meta["rings"]]
        if theirs != saved or theirs != [(r.spec.name, r.slots) for r in st.rings]:
            raise ValueError(f"partials of model {model!r} disagree on windows: {theirs} vs {saved}")
    table = GroupTable.from_state(parts[0][1]["groups"])
    maps = [table.absorb(meta["groups"]) for _, meta in parts]
    st.groups = table
    st._fit()
    heads = [
        [rm["head"] for _, meta in parts for rm in [meta["rings"][i]] if rm["head"] is not None]
        for i in range(len(st.rings))
    ]
    for i, ring in enumerate(st.rings):
        if heads[i]:
            ring.advance(np.array([max(heads[i])], np.int64))
    for (arrays, meta), groups in zip(parts, maps, strict=True):
        unique = len(np.unique(groups)) == len(groups)
        for name, dst in zip(_TABLE, st.totals.arrays(), strict=True):
            _add(dst, arrays[f"totals.{name}"], groups, unique, None)
        for i, ring in enumerate(st.rings):
            if ring.head is None:
                continue
            slot, bucket = arrays[f"ring{i}.slot"], arrays[f"ring{i}.bucket"]
            keep = bucket == ring.bucket_of_slot[slot]  # the merged ring holds that bucket in that slot
            for name, dst in zip(_TABLE, ring.table.arrays(), strict=True):
                _add(dst, arrays[f"ring{i}.{name}"][keep], groups, unique, slot[keep])
        if meta["max_ts"] is not None:
            st.max_ts = max(st.max_ts, meta["max_ts"])
        if meta["last_expiry"] is not None:
            st.last_expiry = max(st.last_expiry, meta["last_expiry"])
        st.versions.update(meta["versions"])
    return st


def merged_gauges(samples: Iterable[Sample]) -> list[Sample]:
    """The ``fairness_*`` gauges of a snapshot: what only the evaluator exports."""
    return [s for s in samples if s.name.startswith("fairness_") and not s.name.endswith("_total")]


def local_samples(engines: Iterable[Engine]) -> list[Sample]:
    """This replica's counters over its own partitions (summed; Prometheus sums the replicas)."""
    engines = list(engines)
    total: dict[tuple, float] = {}
    labels: dict[tuple, dict] = {}
    for e in engines:
        for st in e.models.values():
            for s in counter_samples(st):
                key = (s.name, tuple(sorted(s.labels.items())))
                total[key] = total.get(key, 0.0) + s.value
                labels[key] = s.labels
    out = [Sample(k[0], labels[k], v) for k, v in total.items()]
    events: Counter = Counter()
    for e in engines:
        events.update(e.events)
    for (topic, result, reason), v in sorted(events.items()):
        out.append(Sample("fairwatch_events_total", {"topic": topic, "result": result, "reason": reason}, float(v)))
    out.append(Sample("fairwatch_build_info", {"version": VERSION}, 1.0))
    return out
