"""The engine: micro-batches of raw events → window statistics → metric snapshots.

Per batch, decisions are applied first, then outcomes (an outcome that precedes
its decision in the same batch waits and joins right after, so the result does
not depend on how the stream is cut into batches). The hot path is
batch-shaped: events are validated into columns, group indices are looked up
per column, and every count is added with ``np.bincount``.

>>> from fairwatch.streaming.events import DECISION_SCHEMA
>>> import orjson
>>> engine = Engine(EngineSettings(windows=("1h",), min_decisions=1, min_labeled=1))
>>> raw = [orjson.dumps({"schema": DECISION_SCHEMA, "decision_id": f"d{i}", "model": "m",
...        "model_version": "v1", "ts": 1.8e9 + i, "score": 0.5, "decision": i % 2,
...        "attributes": {"sex": "F" if i < 4 else "M"}}) for i in range(8)]
>>> engine.process(decisions=raw + raw[:1] + [b"{"])
[Rejection(reason='malformed_json', ...)]
>>> snap = engine.snapshot()
>>> snap.value("fairness_selection_rate", window="1h", attribute="sex", group="F")
0.5
>>> snap.value("fairwatch_events_total", result="duplicate")
1.0
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol

import numpy as np
from fairwatch.monitor.checkpoint import FORMAT_VERSION, pack, unpack
from fairwatch.monitor.groups import GroupTable
from fairwatch.monitor.metrics import attribute_metrics
from fairwatch.monitor.snapshot import Sample, Snapshot, WindowMetrics
from fairwatch.monitor.stats import CountsTable, GroupCounts
from fairwatch.monitor.windows import BucketRing, WindowSpec
from fairwatch.streaming.events import (
    DecisionColumns,
    EventError,
    Rejection,
    attribute_generation,
    attribute_set,
    decode_decision_batch,
    outcome_fields,
)
from fairwatch.streaming.join import JoinStore, SpillTier

from fairwatch import __version__

__all__ = ["Engine", "EngineSettings", "VERSION"]

_TABLE = ("dec", "lab", "cal_n", "cal_s", "cal_l")
_MODEL = itemgetter(1)  # the model field of a decoded decision or outcome

VERSION = __version__
DECISIONS_TOPIC = "fairness.decisions"
OUTCOMES_TOPIC = "fairness.outcomes"


class CountObserver(Protocol):
    """Sees the arrays every count comes from (``gidx`` indexes ``names``; −1 = no group)."""

    def on_decisions(self, model: str, names: list, ts: np.ndarray, decision: np.ndarray, gidx: np.ndarray) -> None: ...

    def on_labels(
        self,
        model: str,
        names: list,
        ts: np.ndarray,
        score: np.ndarray,
        decision: np.ndarray,
        label: np.ndarray,
        gidx: np.ndarray,
    ) -> None: ...


@dataclass(frozen=True)
class EngineSettings:
    """Everything the engine needs; built from the YAML config by :mod:`fairwatch.app.config`."""

    windows: tuple[str, ...] = ("1h", "24h", "7d")
    buckets: int = 60
    bins: int = 10
    min_decisions: int = 100
    min_labeled: int = 50
    allowed_lateness: float = 300.0
    max_future_skew: float = 300.0
    confidence: float = 0.95
    max_groups: int = 50
    attributes: tuple[str, ...] | None = None
    intersections: tuple[tuple[str, ...], ...] | None = None
    reference_groups: Mapping[str, str] = field(default_factory=dict)
    #: per model, attribute → reference group; overrides ``reference_groups`` for that model
    model_reference_groups: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    label_maturity: Mapping[str, float] = field(default_factory=dict)  # per model, seconds
    join_ttl: float = 30 * 86400.0
    join_capacity: int = 500_000
    join_max_waiting: int = 100_000
    join_spill_path: str | None = None  # SQLite file for the durable tier; None = memory only

    def window_specs(self) -> list[WindowSpec]:
        return [WindowSpec.parse(w, buckets=self.buckets) for w in self.windows]


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
            raise ValueError(
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


class Engine:
    """Applies micro-batches of raw events and produces snapshots."""

    def __init__(self, settings: EngineSettings | None = None, *, observer: CountObserver | None = None):
        self.settings = settings or EngineSettings()
        self.observer = observer
        self.settings.window_specs()  # fail early on a bad window name
        self.models: dict[str, ModelState] = {}
        self.events: Counter[tuple[str, str, str]] = Counter()
        self.touched: set[str] = set()  # models the last process() call updated

    def _state(self, model: str) -> ModelState:
        st = self.models.get(model)
        if st is None:
            st = self.models[model] = ModelState(model, self.settings, self.observer)
        return st

    # -- ingestion -------------------------------------------------------------
    def process(
        self,
        *,
        decisions: Sequence[bytes] = (),
        outcomes: Sequence[bytes] = (),
        now: float | None = None,
        decision_meta: Sequence[tuple[int, int]] | None = None,
        outcome_meta: Sequence[tuple[int, int]] | None = None,
        decision_topic: str = DECISIONS_TOPIC,
        outcome_topic: str = OUTCOMES_TOPIC,
    ) -> list[Rejection]:
        """Apply one micro-batch; returns the rejected events (for the dead-letter sink).

        ``now`` is the source's clock for the future-skew check (``None`` for a
        replay of history). ``*_meta`` are (partition, offset) per event.
        """
        rejected: list[Rejection] = []
        self.touched = set()
        if decisions:
            self._decisions(decisions, now, decision_meta, decision_topic, rejected)
        if outcomes:
            self._outcomes(outcomes, now, outcome_meta, outcome_topic, rejected)
        return rejected

    def _validate(self, raws, fn, now, meta, topic, rejected) -> list[tuple]:
        skew = self.settings.max_future_skew
        good = []
        append = good.append
        for j, raw in enumerate(raws):
            try:
                append(fn(raw, now=now, max_future_skew=skew))
            except EventError as exc:
                part, off = meta[j] if meta else (None, None)
                rejected.append(Rejection(exc.reason, str(exc), bytes(raw), topic, part, off))
                self.events[(topic, "invalid", exc.reason)] += 1
        return good

    def _decisions(self, raws, now, meta, topic, rejected) -> None:
        good, bad = decode_decision_batch(raws, now=now, max_future_skew=self.settings.max_future_skew)
        for j, exc in bad:
            part, off = meta[j] if meta else (None, None)
            rejected.append(Rejection(exc.reason, str(exc), bytes(raws[j]), topic, part, off))
            self.events[(topic, "invalid", exc.reason)] += 1
        if not good.ids:
            return
        models = set(good.models)
        if len(models) == 1:
            self._model_decisions(self._state(models.pop()), good, topic)
            return
        names = np.array(good.models, object)
        for model in sorted(models):
            self._model_decisions(self._state(model), good.take(np.nonzero(names == model)[0]), topic)

    def _model_decisions(self, st: ModelState, cols: DecisionColumns, topic: str) -> None:
        self.touched.add(st.model)
        ids, versions, ts_a, fp_a = cols.ids, cols.versions, cols.ts, cols.fingerprint
        n = len(ids)
        # Dedupe against the join store and within the batch (first write wins),
        # reserving rows for the new ones in the same pass.
        rows, fresh, same = st.join.claim(ids, fp_a)
        n_dup = n - int(fresh.sum())
        if n_dup:
            n_conf = int((~fresh & ~same).sum())
            if n_conf:
                self.events[(topic, "duplicate", "conflicting")] += n_conf
            if n_dup - n_conf:
                self.events[(topic, "duplicate", "same")] += n_dup - n_conf
        # Lateness: older than the oldest live bucket, judged in arrival order.
        runmax = np.maximum.accumulate(np.where(fresh, ts_a, -np.inf))
        runmax = np.maximum(runmax, st.max_ts)
        late = fresh & (ts_a < runmax - self.settings.allowed_lateness - st.span)
        if late.any():
            self.events[(topic, "late", "too_old")] += int(late.sum())
            lj = np.nonzero(late)[0]
            st.join.release([ids[j] for j in lj.tolist()], rows[lj])
        ok = fresh & ~late
        n_ok = int(ok.sum())
        if n_ok == 0:
            return
        self.events[(topic, "ok", "")] += n_ok
        st.max_ts = max(st.max_ts, float(runmax[-1]))
        if n_ok == n:
            sel = slice(None)
            ids_ok, ver_ok = ids, versions
        else:
            sel = np.nonzero(ok)[0]
            ids_ok = [ids[j] for j in sel.tolist()]
            ver_ok = [versions[j] for j in sel.tolist()]
        seen = set(ver_ok)
        if len(seen) == 1:  # the usual case: one live version
            st.versions[seen.pop()] += len(ver_ok)
        else:
            st.versions.update(ver_ok)
        ts_a = ts_a[sel]
        score_a = cols.score[sel]
        dec_a = cols.decision[sel]
        lab_a = cols.label[sel]
        gidx = st.groups.encode_sets(cols.sets[sel], attribute_generation(), attribute_set)
        st._fit()
        st.count_decisions(ts_a, dec_a, gidx)
        labeled = lab_a >= 0
        if labeled.any():
            st.count_labels(ts_a[labeled], score_a[labeled], dec_a[labeled], lab_a[labeled], gidx[labeled])
        rows = rows[sel]
        st.join.fill(rows, ids_ok, ts_a, score_a, dec_a, lab_a, fp_a[sel], gidx)
        # Outcomes that arrived before their decision join now.
        pos, labs = st.join.take_waiting(ids_ok)
        if pos:
            p = np.array(pos)
            early = np.array(labs, np.int64)
            already = labeled[p]
            if already.any():
                # The event was counted (ok) when it arrived; the decision's own label wins,
                # so this outcome ends as a superseded join, not as a second event.
                st.join.counts["superseded"] += int(already.sum())
            p, early = p[~already], early[~already]
            st.join.set_labels(rows[p], early)
            st.count_labels(ts_a[p], score_a[p], dec_a[p], early, gidx[p])
        st.join.trim()
        if st.watermark - st.last_expiry >= st.rings[0].spec.width:
            st.join.expire(watermark=st.watermark)
            st.last_expiry = st.watermark

    def _outcomes(self, raws, now, meta, topic, rejected) -> None:
        good = self._validate(raws, outcome_fields, now, meta, topic, rejected)
        if not good:
            return
        models = set(map(_MODEL, good))
        for model in sorted(models):
            rows = good if len(models) == 1 else [f for f in good if f[1] == model]
            self._model_outcomes(self._state(model), rows, topic)

    def _model_outcomes(self, st: ModelState, rows: list[tuple], topic: str) -> None:
        self.touched.add(st.model)
        ids, _, times, labels = zip(*rows, strict=True)
        n = len(ids)
        lab_a = np.array(labels, np.int64)
        dup = np.zeros(n, bool)
        if len(set(ids)) != n:
            seen: set[str] = set()
            for j, i in enumerate(ids):
                if i in seen:
                    dup[j] = True
                seen.add(i)
        rows_a = st.join.lookup(ids)
        found = (rows_a >= 0) & ~dup
        already = np.zeros(n, bool)
        already[found] = st.join.label[rows_a[found]] >= 0
        join = found & ~already
        waiting = st.join.waiting
        early = ~dup & (rows_a < 0)
        if early.any():
            ej = np.nonzero(early)[0]
            again = np.array([ids[j] in waiting for j in ej], bool)
            dup[ej[again]] = True
            early[ej[again]] = False
        n_dup = int(dup.sum()) + int(already.sum())
        if n_dup:
            self.events[(topic, "duplicate", "already_labeled")] += n_dup
        n_ok = n - n_dup
        if n_ok:
            self.events[(topic, "ok", "")] += n_ok
        if early.any():
            ej = np.nonzero(early)[0]
            st.join.wait_outcomes([ids[j] for j in ej], lab_a[ej], np.array(times, np.float64)[ej])
        if join.any():
            r = rows_a[join]
            st.join.set_labels(r, lab_a[join])
            j = st.join
            st.count_labels(j.ts[r], j.score[r], j.decision[r], lab_a[join], j.groups[r])

    # -- evaluation ------------------------------------------------------------
    def snapshot(self, *, now: float | None = None) -> Snapshot:
        """Compute every metric of every window (DESIGN §3) and the counters (§4)."""
        s = self.settings
        samples: list[Sample] = []
        windows: list[WindowMetrics] = []
        add = samples.append
        for model in sorted(self.models):
            st = self.models[model]
            names = st.groups.names
            active = st.groups.active_columns()
            by_col: dict[str, list[int]] = {c: [] for c in active}
            for idx, (col, _) in enumerate(names):
                if col in by_col:
                    by_col[col].append(idx)
            for ring in st.rings:
                wname = ring.spec.name
                dec_tab = ring.decision_window()
                lab_tab = ring.outcome_window()
                for col in active:
                    idxs = by_col[col]
                    dec = {names[i][1]: dec_tab.row(i) for i in idxs}
                    lab = {names[i][1]: lab_tab.row(i) for i in idxs}
                    am = attribute_metrics(
                        dec,
                        lab,
                        attribute=col,
                        min_decisions=s.min_decisions,
                        min_labeled=s.min_labeled,
                        reference=s.model_reference_groups.get(model, {}).get(col, s.reference_groups.get(col)),
                        confidence=s.confidence,
                    )
                    windows.append(WindowMetrics(model, wname, am))
                    base = {"model": model, "window": wname, "attribute": col}
                    for gm in am.groups:
                        gl = {**base, "group": gm.group}
                        add(Sample("fairness_group_samples", {**gl, "kind": "decisions"}, float(gm.decisions)))
                        add(Sample("fairness_group_samples", {**gl, "kind": "labeled"}, float(gm.labeled)))
                        if gm.labeled_share is not None:
                            add(Sample("fairness_labeled_share", gl, gm.labeled_share))
                        if gm.sufficient:
                            add(Sample("fairness_selection_rate", gl, gm.selection_rate))
                            if gm.disparate_impact is not None:
                                add(Sample("fairness_disparate_impact", gl, gm.disparate_impact))
                        if gm.sufficient_labeled:
                            for name, value in (
                                ("fairness_true_positive_rate", gm.true_positive_rate),
                                ("fairness_false_positive_rate", gm.false_positive_rate),
                                ("fairness_accuracy", gm.accuracy),
                                ("fairness_expected_calibration_error", gm.expected_calibration_error),
                            ):
                                if value is not None:
                                    add(Sample(name, gl, value))
                    for name, value in (
                        ("fairness_demographic_parity_ratio", am.dp_ratio),
                        ("fairness_demographic_parity_difference", am.dp_difference),
                        ("fairness_equalized_odds_gap", am.eo_gap),
                    ):
                        if value is not None:
                            add(Sample(name, base, value))
            samples.extend(self._counter_samples(st))
        for (topic, result, reason), v in sorted(self.events.items()):
            add(Sample("fairwatch_events_total", {"topic": topic, "result": result, "reason": reason}, float(v)))
        add(Sample("fairwatch_build_info", {"version": VERSION}, 1.0))
        return Snapshot(
            created=time.time() if now is None else now,
            samples=tuple(samples),
            windows=tuple(windows),
            event_time={m: st.max_ts for m, st in self.models.items()},
        )

    def _counter_samples(self, st: ModelState) -> list[Sample]:
        out: list[Sample] = []
        t = st.totals
        model = st.model
        for idx, (col, group) in enumerate(st.groups.names):
            base = {"model": model, "attribute": col, "group": group}
            if not t.dec[idx].any() and not t.lab[idx].any():
                continue
            for d in (0, 1):
                out.append(Sample("fairness_decisions_total", {**base, "decision": str(d)}, float(t.dec[idx, d])))
                for lab in (0, 1):
                    out.append(
                        Sample(
                            "fairness_outcomes_total",
                            {**base, "decision": str(d), "label": str(lab)},
                            float(t.lab[idx, d, lab]),
                        )
                    )
            for b in range(t.bins):
                bl = {**base, "bin": str(b)}
                out.append(Sample("fairness_calibration_count_total", bl, float(t.cal_n[idx, b])))
                out.append(Sample("fairness_calibration_score_sum_total", bl, float(t.cal_s[idx, b])))
                out.append(Sample("fairness_calibration_label_sum_total", bl, float(t.cal_l[idx, b])))
        for result in ("joined", "expired", "orphaned", "superseded"):
            out.append(
                Sample(
                    "fairwatch_outcome_joins_total", {"model": model, "result": result}, float(st.join.counts[result])
                )
            )
        out.append(Sample("fairwatch_pending_outcomes", {"model": model}, float(st.join.pending_unlabeled)))
        return out

    # -- checkpoints -----------------------------------------------------------
    def state_blob(self, models: Iterable[str] | None = None, *, events: Mapping | None = None) -> bytes:
        """Checkpoint of ``models`` (default: all) and an events ledger as one blob."""
        names = sorted(self.models if models is None else set(models) & set(self.models))
        arrays: dict[str, np.ndarray] = {}
        metas = []
        for i, name in enumerate(names):
            a, m = self.models[name].to_state()
            arrays.update({f"m{i}.{k}": v for k, v in a.items()})
            metas.append(m)
        ledger = self.events if events is None else events
        meta = {
            "format": FORMAT_VERSION,
            "models": metas,
            "events": [[t, r, why, n] for (t, r, why), n in sorted(ledger.items())],
        }
        return pack(arrays, meta)

    def restore_blob(self, blob: bytes) -> tuple[Counter[tuple[str, str, str]], list[str]]:
        """Load the models of a checkpoint blob (replacing same-named ones).

        Returns the blob's events ledger and the names of the models it held.
        """
        arrays, meta = unpack(blob)
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"checkpoint format {meta.get('format')!r}, this fairwatch reads {FORMAT_VERSION}")
        for i, m in enumerate(meta["models"]):
            st = ModelState(m["model"], self.settings, self.observer)
            prefix = f"m{i}."
            st.restore({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}, m)
            self.models[m["model"]] = st
        ledger = Counter({(t, r, why): n for t, r, why, n in meta["events"]})
        return ledger, [m["model"] for m in meta["models"]]

    def drop(self, models: Iterable[str]) -> None:
        """Forget models (their partitions moved to another replica)."""
        for m in models:
            self.models.pop(m, None)

    # -- helpers for tests and tools ------------------------------------------
    def window_counts(self, model: str, window: str, *, labeled: bool = False) -> dict[tuple[str, str], GroupCounts]:
        """The raw per-(column, group) counts of one window (for oracle tests)."""
        st = self.models[model]
        ring = next(r for r in st.rings if r.spec.name == window)
        tab = ring.outcome_window() if labeled else ring.decision_window()
        return {name: tab.row(i) for i, name in enumerate(st.groups.names)}
