"""Model state and its checkpoint form: windows, totals and join store of one model, and the
engine's checkpoint blob (every model's arrays and metadata plus the events ledger)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
from fairwatch.monitor.checkpoint import FORMAT_VERSION, pack, unpack
from fairwatch.monitor.groups import GroupTable
from fairwatch.monitor.stats import CountsTable
from fairwatch.monitor.windows import BucketRing
from fairwatch.streaming.join import JoinStore, SpillTier

from fairwatch.errors import FairwatchError

if TYPE_CHECKING:
    from fairwatch.monitor.engine import CountObserver, EngineSettings

__all__ = ["CheckpointMismatch", "ModelState", "models_blob", "models_from_blob"]


class CheckpointMismatch(FairwatchError, ValueError):
    """A checkpoint taken with other window settings (or in another format) than this engine's."""


_TABLE = ("dec", "lab", "cal_n", "cal_s", "cal_l")


class ModelState:
    """Windows, totals and the join store of one model.

    ``observer`` (optional) sees every counted decision and label with its
    decision's event time — e.g. :class:`fairwatch.monitor.daily.DailyStats`, which keeps
    per-day counts for the monthly audit export.
    """

    def __init__(self, model: str, settings: EngineSettings, observer: CountObserver | None = None):
        self.model = model
        self.settings = settings
        self.observer = observer
        self.groups = GroupTable(
            attributes=settings.attributes,
            intersections=settings.intersections,
            max_groups=settings.max_groups,
        )
        self.maturity = float(settings.label_maturity.get(model, 0.0))
        self.rings = []
        for spec in settings.window_specs():
            m = math.ceil(self.maturity / spec.width) if self.maturity else 0
            self.rings.append(
                BucketRing(
                    spec,
                    groups=0,
                    bins=settings.bins,
                    maturity_buckets=m,
                    lateness=settings.allowed_lateness,
                )
            )
        self.span = max(r.spec.seconds + r.maturity_buckets * r.spec.width for r in self.rings)
        self.totals = CountsTable((), groups=0, bins=settings.bins)
        spill = None
        if settings.join_spill_path:
            spill = SpillTier(settings.join_spill_path)
        self.join = JoinStore(
            width=max(1, len(self.groups.columns)),
            ttl=settings.join_ttl,
            capacity=settings.join_capacity,
            max_waiting=settings.join_max_waiting,
            spill=spill,
        )
        self.max_ts = -math.inf
        self.last_expiry = -math.inf
        self.versions: Counter[str] = Counter()

    @property
    def watermark(self) -> float:
        return self.max_ts - self.settings.allowed_lateness

    # -- checkpoints -----------------------------------------------------------
    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays: dict[str, np.ndarray] = {}
        for name, a in zip(_TABLE, self.totals.arrays(), strict=True):
            arrays[f"totals.{name}"] = a
        rings = []
        for i, r in enumerate(self.rings):
            for name, a in zip(_TABLE, r.table.arrays(), strict=True):
                arrays[f"ring{i}.{name}"] = a
            arrays[f"ring{i}.bucket_of_slot"] = r.bucket_of_slot
            rings.append({"window": r.spec.name, "slots": r.slots, "head": r.head})
        join_arrays, join_meta = self.join.to_state()
        arrays.update({f"join.{k}": v for k, v in join_arrays.items()})
        meta = {
            "model": self.model,
            "groups": self.groups.to_state(),
            "rings": rings,
            "join": join_meta,
            "max_ts": None if self.max_ts == -math.inf else self.max_ts,
            "last_expiry": None if self.last_expiry == -math.inf else self.last_expiry,
            "versions": dict(self.versions),
        }
        return arrays, meta

    def restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Continue from a checkpoint taken with the same window configuration."""
        saved = [(r["window"], r["slots"]) for r in meta["rings"]]
        mine = [(r.spec.name, r.slots) for r in self.rings]
        if saved != mine:
            raise CheckpointMismatch(
                f"checkpoint of model {self.model!r} has windows {saved}, configuration has {mine}: "
                "changed windows, buckets, lateness or label maturity need a fresh state"
            )
        self.groups = GroupTable.from_state(meta["groups"])
        g = self.groups.size
        self.totals = CountsTable((), groups=g, bins=self.settings.bins)
        for name, a in zip(_TABLE, self.totals.arrays(), strict=True):
            a[...] = arrays[f"totals.{name}"]
        for i, (r, rm) in enumerate(zip(self.rings, meta["rings"], strict=True)):
            r.table = CountsTable((r.slots,), groups=g, bins=self.settings.bins)
            for name, a in zip(_TABLE, r.table.arrays(), strict=True):
                a[...] = arrays[f"ring{i}.{name}"]
            r.bucket_of_slot = arrays[f"ring{i}.bucket_of_slot"].copy()
            r.head = rm["head"]
        self.join.restore({k[5:]: v for k, v in arrays.items() if k.startswith("join.")}, meta["join"])
        self.max_ts = -math.inf if meta["max_ts"] is None else meta["max_ts"]
        self.last_expiry = -math.inf if meta["last_expiry"] is None else meta["last_expiry"]
        self.versions = Counter(meta["versions"])

    def _fit(self) -> None:
        """Grow the count arrays when new groups or columns appeared."""
        g = self.groups.size
        if g > self.totals.groups:
            self.totals.grow(g)
            for r in self.rings:
                r.table.grow(g)
        self.join.widen(len(self.groups.columns))

    def count_decisions(self, ts: np.ndarray, decision: np.ndarray, gidx: np.ndarray) -> None:
        cols = gidx.shape[1]
        flat = gidx.reshape(-1)
        keep = flat >= 0
        dec = np.repeat(decision, cols)[keep]
        grp = flat[keep]
        self.totals.add_decisions(grp, dec)
        for ring in self.rings:
            k = ring.bucket(ts)
            ring.advance(k)
            live = np.repeat(ring.live_mask(k), cols)[keep]
            slot = np.repeat(ring.slot(k), cols)[keep]
            ring.table.add_decisions(grp[live], dec[live], slot[live])
        if self.observer is not None:
            self.observer.on_decisions(self.model, self.groups.names, ts, decision, gidx)

    def count_labels(
        self,
        ts: np.ndarray,
        score: np.ndarray,
        decision: np.ndarray,
        label: np.ndarray,
        gidx: np.ndarray,
    ) -> None:
        if len(ts) == 0:
            return
        cols = gidx.shape[1]
        flat = gidx.reshape(-1)
        keep = flat >= 0
        grp = flat[keep]
        sc = np.repeat(score, cols)[keep]
        dec = np.repeat(decision, cols)[keep]
        lab = np.repeat(label, cols)[keep]
        self.totals.add_labels(grp, sc, dec, lab)
        for ring in self.rings:
            k = ring.bucket(ts)
            live = np.repeat(ring.live_mask(k), cols)[keep]
            slot = np.repeat(ring.slot(k), cols)[keep]
            ring.table.add_labels(grp[live], sc[live], dec[live], lab[live], slot[live])
        if self.observer is not None:
            self.observer.on_labels(self.model, self.groups.names, ts, score, decision, label, gidx)


def models_blob(models: Mapping[str, ModelState], names: Iterable[str], ledger: Mapping) -> bytes:
    """Checkpoint of the models ``names`` and an events ledger as one blob."""
    arrays: dict[str, np.ndarray] = {}
    metas = []
    for i, name in enumerate(names):
        a, m = models[name].to_state()
        arrays.update({f"m{i}.{k}": v for k, v in a.items()})
        metas.append(m)
    meta = {
        "format": FORMAT_VERSION,
        "models": metas,
        "events": [[t, r, why, n] for (t, r, why), n in sorted(ledger.items())],
    }
    return pack(arrays, meta)


def models_from_blob(
    blob: bytes, settings: EngineSettings, observer: CountObserver | None
) -> tuple[list[ModelState], Counter[tuple[str, str, str]]]:
    """The models and the events ledger of a checkpoint blob."""
    arrays, meta = unpack(blob)
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointMismatch(f"checkpoint format {meta.get('format')!r}, this fairwatch reads {FORMAT_VERSION}")
    states = []
    for i, m in enumerate(meta["models"]):
        st = ModelState(m["model"], settings, observer)
        prefix = f"m{i}."
        st.restore({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}, m)
        states.append(st)
    ledger = Counter({(t, r, why): n for t, r, why, n in meta["events"]})
    return states, ledger
