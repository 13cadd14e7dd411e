"""Ingestion: a micro-batch of raw decisions or outcomes → counts in each model's windows.

Decisions: the batch fast path validates them into columns (the engine's own
attribute-set registry), duplicates and late events are counted and dropped,
the rest are counted per group with ``np.bincount`` and kept in the join store;
outcomes that arrived before their decision join right after it. Outcomes:
validated by the outcome fast path, then joined by decision id (or left waiting).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from fairwatch.monitor.daily import DAY
from fairwatch.streaming.batch import DecisionColumns, OutcomeColumns, decode_decision_batch, decode_outcome_batch
from fairwatch.streaming.schema import Rejection

if TYPE_CHECKING:
    from fairwatch.monitor.engine import Engine
    from fairwatch.monitor.engine_state import ModelState

__all__ = ["ingest_decisions", "ingest_outcomes", "apply_decisions", "apply_outcomes", "count_rejections"]


def _tally(engine: Engine, topic: str, result: str, reason: str, ts: np.ndarray, mask=None) -> None:
    """Count events by their event day in the batch's :class:`~fairwatch.monitor.daily.EventDays`, if asked."""
    led = engine.event_days
    if led is None:
        return
    led.tally(topic, result, reason, ts if mask is None else ts[mask])


def _positions(engine: Engine, topic: str, n: int, bad, ts: np.ndarray) -> None:
    """Each message's event day, by position in the batch (an invalid one: the processing day)."""
    led = engine.event_days
    if led is None:
        return
    days = np.full(n, led.processing_day, np.int64)
    if len(ts):
        good = np.ones(n, bool)
        good[[j for j, _ in bad]] = False
        days[good] = np.floor_divide(ts, DAY).astype(np.int64)
    led.positions[topic] = days


def ingest_decisions(engine: Engine, raws, now, meta, topic, rejected) -> None:
    """Validate, dedupe and count a batch of raw decisions; rejected ones are appended to ``rejected``."""
    good, bad = decode_decision_batch(
        raws, now=now, max_future_skew=engine.settings.max_future_skew, registry=engine.attribute_sets
    )
    count_rejections(engine, [(j, exc, raws[j]) for j, exc in bad], meta, topic, rejected)
    _positions(engine, topic, len(raws), bad, good.ts)
    _per_model(engine, good, _model_decisions, topic)


def apply_decisions(engine: Engine, good: DecisionColumns, topic: str) -> None:
    """Dedupe and count decisions already validated (``good`` of :func:`decode_decision_batch`
    with this engine's attribute-set registry), model by model."""
    _per_model(engine, good, _model_decisions, topic)


def _per_model(engine: Engine, good: DecisionColumns | OutcomeColumns, apply, topic: str) -> None:
    """``apply(engine, state, columns, topic)`` for each model's events (columns taken by position)."""
    if not good.ids:
        return
    names = good.models
    if names.count(names[0]) == len(names):  # the usual case: one model (compared, not hashed)
        apply(engine, engine._state(names[0]), good, topic)
        return
    models = set(names)
    names = np.array(names, object)
    for model in sorted(models):
        apply(engine, engine._state(model), good.take(np.nonzero(names == model)[0]), topic)


def _model_decisions(engine: Engine, st: ModelState, cols: DecisionColumns, topic: str) -> None:
    engine.touched.add(st.model)
    ids, versions, ts_a, fp_a = cols.ids, cols.versions, cols.ts, cols.fingerprint
    n = len(ids)
    # Dedupe against the join store and within the batch (first write wins),
    # reserving rows for the new ones in the same pass.
    rows, fresh, same = st.join.claim(ids, fp_a)
    n_dup = n - int(fresh.sum())
    if n_dup:
        n_conf = int((~fresh & ~same).sum())
        if n_conf:
            engine.events[(topic, "duplicate", "conflicting")] += n_conf
            _tally(engine, topic, "duplicate", "conflicting", ts_a, ~fresh & ~same)
        if n_dup - n_conf:
            engine.events[(topic, "duplicate", "same")] += n_dup - n_conf
            _tally(engine, topic, "duplicate", "same", ts_a, ~fresh & same)
    # Lateness: older than the oldest live bucket, judged in arrival order.
    runmax = np.maximum.accumulate(np.where(fresh, ts_a, -np.inf))
    runmax = np.maximum(runmax, st.max_ts)
    late = fresh & (ts_a < runmax - engine.settings.allowed_lateness - st.span)
    if late.any():
        engine.events[(topic, "late", "too_old")] += int(late.sum())
        _tally(engine, topic, "late", "too_old", ts_a, late)
        lj = np.nonzero(late)[0]
        st.join.release([ids[j] for j in lj.tolist()], rows[lj])
    ok = fresh & ~late
    n_ok = int(ok.sum())
    if n_ok == 0:
        return
    engine.events[(topic, "ok", "")] += n_ok
    _tally(engine, topic, "ok", "", ts_a, None if n_ok == n else ok)
    st.max_ts = max(st.max_ts, float(runmax[-1]))
    if n_ok == n:
        sel = slice(None)
        ids_ok, ver_ok = ids, versions
    else:
        sel = np.nonzero(ok)[0]
        ids_ok = [ids[j] for j in sel.tolist()]
        ver_ok = [versions[j] for j in sel.tolist()]
    if ver_ok.count(ver_ok[0]) == len(ver_ok):  # the usual case: one live version
        st.versions[ver_ok[0]] += len(ver_ok)
    else:
        st.versions.update(ver_ok)
    ts_a = ts_a[sel]
    score_a = cols.score[sel]
    dec_a = cols.decision[sel]
    lab_a = cols.label[sel]
    gidx = st.groups.encode_sets(cols.sets[sel], cols.registry.generation, cols.registry.key)
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


def ingest_outcomes(engine: Engine, raws, now, meta, topic, rejected) -> None:
    """Validate a batch of raw outcomes and join them to their decisions (or let them wait)."""
    good, bad = decode_outcome_batch(raws, now=now, max_future_skew=engine.settings.max_future_skew)
    count_rejections(engine, [(j, exc, raws[j]) for j, exc in bad], meta, topic, rejected)
    _positions(engine, topic, len(raws), bad, good.ts)
    apply_outcomes(engine, good, topic)


def count_rejections(engine: Engine, bad, meta, topic: str, rejected: list[Rejection]) -> None:
    """Count ``(position, error, raw)`` rejections and append them to ``rejected``."""
    for j, exc, raw in bad:
        part, off = meta[j] if meta else (None, None)
        rejected.append(Rejection(exc.reason, str(exc), bytes(raw), topic, part, off))
        engine.events[(topic, "invalid", exc.reason)] += 1
        if engine.event_days is not None:  # no event time of its own: the day it was processed
            engine.event_days.add(topic, engine.event_days.processing_day, "invalid", exc.reason, 1)


def apply_outcomes(engine: Engine, good: OutcomeColumns, topic: str) -> None:
    """Join validated outcomes to their decisions (or let them wait), model by model."""
    _per_model(engine, good, _model_outcomes, topic)


def _model_outcomes(engine: Engine, st: ModelState, cols: OutcomeColumns, topic: str) -> None:
    engine.touched.add(st.model)
    ids = cols.ids
    n = len(ids)
    lab_a = cols.label
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
        engine.events[(topic, "duplicate", "already_labeled")] += n_dup
        _tally(engine, topic, "duplicate", "already_labeled", cols.ts, dup | already)
    n_ok = n - n_dup
    if n_ok:
        engine.events[(topic, "ok", "")] += n_ok
        _tally(engine, topic, "ok", "", cols.ts, None if n_ok == n else ~(dup | already))
    if early.any():
        ej = np.nonzero(early)[0]
        st.join.wait_outcomes([ids[j] for j in ej], lab_a[ej], cols.ts[ej])
    if join.any():
        r = rows_a[join]
        st.join.set_labels(r, lab_a[join])
        j = st.join
        st.count_labels(j.ts[r], j.score[r], j.decision[r], lab_a[join], j.groups[r])
