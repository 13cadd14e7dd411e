"""Sample naming: each model's window statistics → the metric samples of a :class:`Snapshot`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from fairwatch.monitor.metrics import attribute_metrics
from fairwatch.monitor.snapshot import ModelCounts, Sample, Snapshot, WindowMetrics

from fairwatch import __version__

if TYPE_CHECKING:
    from fairwatch.monitor.engine import Engine
    from fairwatch.monitor.engine_state import ModelState

__all__ = ["build_snapshot", "counter_samples", "model_counts", "VERSION"]

VERSION = __version__


def build_snapshot(engine: Engine, *, now: float | None = None, counters_only: bool = False) -> Snapshot:
    """Every metric of every window (docs/metrics.md), named as its "Prometheus names" section says.

    Every snapshot carries each model's counters as tables too (``Snapshot.counts``).
    ``counters_only``: the counters alone — those tables, the joins and the events as samples,
    and the event times — without the window statistics, the pending-outcomes gauge and a
    sample per group and bin: what the sequential alert policy reads
    (:func:`fairwatch.alerts.sequential.counts_from_snapshot`), for a backtest that exports
    nothing.
    """
    if counters_only:
        samples = [x for model in sorted(engine.models) for x in counter_samples(engine.models[model], groups=False)]
        return _snapshot(engine, samples, [], now)
    s = engine.settings
    samples: list[Sample] = []
    windows: list[WindowMetrics] = []
    add = samples.append
    for model in sorted(engine.models):
        st = engine.models[model]
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
                # views: the window tables are built for this snapshot and read right here
                dec = {names[i][1]: dec_tab.view(i) for i in idxs}
                lab = {names[i][1]: lab_tab.view(i) for i in idxs}
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
        samples.extend(counter_samples(st))
    return _snapshot(engine, samples, windows, now)


def _snapshot(engine: Engine, samples: list[Sample], windows: list[WindowMetrics], now: float | None) -> Snapshot:
    """The snapshot of ``samples`` and ``windows``, with the events ledger and the build info."""
    for (topic, result, reason), v in sorted(engine.events.items()):
        samples.append(Sample("fairwatch_events_total", {"topic": topic, "result": result, "reason": reason}, float(v)))
    samples.append(Sample("fairwatch_build_info", {"version": VERSION}, 1.0))
    counts = {m: c for m in sorted(engine.models) if (c := model_counts(engine.models[m])) is not None}
    return Snapshot(
        created=time.time() if now is None else now,
        samples=tuple(samples),
        windows=tuple(windows),
        event_time={m: st.max_ts for m, st in engine.models.items()},
        counts=counts,
    )


def model_counts(st: ModelState) -> ModelCounts | None:
    """One model's counters as tables: the groups :func:`counter_samples` writes samples for, in
    their order, with the same values (``None`` if there is none)."""
    dec, lab, cal_n, cal_s, cal_l = (a.astype(float) for a in st.totals.arrays())
    g = len(st.groups.names)
    keep = np.nonzero(dec[:g].any(axis=1) | lab[:g].any(axis=(1, 2)))[0]  # also for 0 groups
    if not len(keep):
        return None
    names = st.groups.names
    return ModelCounts([names[i] for i in keep.tolist()], dec[keep], lab[keep], cal_n[keep], cal_s[keep], cal_l[keep])


def counter_samples(st: ModelState, *, groups: bool = True) -> list[Sample]:
    """One model's counters (totals, joins) and its pending-outcomes gauge (``groups=False``:
    the joins alone; :func:`model_counts` gives the per-group totals as tables)."""
    out: list[Sample] = []
    t = st.totals
    model = st.model
    if not groups:
        return _join_samples(st, out, pending=False)
    # Python numbers read once (tolist): a numpy scalar read per sample costs more than the sample
    dec, lab, cal_n, cal_s, cal_l = (a.tolist() for a in t.arrays())
    for idx, (col, group) in enumerate(st.groups.names):
        base = {"model": model, "attribute": col, "group": group}
        (n0, n1), ((l00, l01), (l10, l11)) = dec[idx], lab[idx]
        if not (n0 or n1 or l00 or l01 or l10 or l11):
            continue
        for d in (0, 1):
            out.append(Sample("fairness_decisions_total", {**base, "decision": str(d)}, float(dec[idx][d])))
            for y in (0, 1):
                out.append(
                    Sample(
                        "fairness_outcomes_total",
                        {**base, "decision": str(d), "label": str(y)},
                        float(lab[idx][d][y]),
                    )
                )
        for b, (cn, cs, cl) in enumerate(zip(cal_n[idx], cal_s[idx], cal_l[idx], strict=True)):
            bl = {**base, "bin": str(b)}
            out.append(Sample("fairness_calibration_count_total", bl, float(cn)))
            out.append(Sample("fairness_calibration_score_sum_total", bl, float(cs)))
            out.append(Sample("fairness_calibration_label_sum_total", bl, float(cl)))
    return _join_samples(st, out)


def _join_samples(st: ModelState, out: list[Sample], *, pending: bool = True) -> list[Sample]:
    """``out`` with one model's join counters (and its pending-outcomes gauge) appended."""
    model = st.model
    for result in ("joined", "expired", "orphaned", "superseded"):
        out.append(
            Sample("fairwatch_outcome_joins_total", {"model": model, "result": result}, float(st.join.counts[result]))
        )
    if pending:
        out.append(Sample("fairwatch_pending_outcomes", {"model": model}, float(st.join.pending_unlabeled)))
    return out
