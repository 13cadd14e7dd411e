"""The metric snapshot: what the engine publishes each evaluation, what exporters read.

The monitor's families and their label names are fixed here once (docs/metrics.md);
the alert layer defines its own (:mod:`fairwatch.alerts.families`) and the application
exports both (:mod:`fairwatch.app.families`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from fairwatch.monitor.metrics import AttributeMetrics

__all__ = ["FAMILIES", "Family", "ModelCounts", "Sample", "Snapshot", "SnapshotBoard"]


@dataclass(frozen=True, slots=True)
class Family:
    name: str  # as exposed (counters end in _total)
    kind: str  # "gauge" | "counter"
    labels: tuple[str, ...]
    doc: str


_G = ("model", "window", "attribute", "group")
_A = ("model", "window", "attribute")
_C = ("model", "attribute", "group")

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("fairness_selection_rate", "gauge", _G, "Favorable decisions / decisions in the group."),
        Family("fairness_true_positive_rate", "gauge", _G, "P(decision=1 | label=1) over matured labeled decisions."),
        Family("fairness_false_positive_rate", "gauge", _G, "P(decision=1 | label=0) over matured labeled decisions."),
        Family("fairness_accuracy", "gauge", _G, "Labeled decisions where decision = label / labeled decisions."),
        Family(
            "fairness_expected_calibration_error",
            "gauge",
            _G,
            "Sum_b |L_b - S_b| / N over the group's labeled decisions.",
        ),
        Family("fairness_disparate_impact", "gauge", _G, "Selection rate / the reference group's selection rate."),
        Family(
            "fairness_group_samples",
            "gauge",
            _G + ("kind",),
            "Decisions (kind=decisions) and matured labeled decisions (kind=labeled) in the window.",
        ),
        Family(
            "fairness_labeled_share", "gauge", _G, "Share of the matured window's decisions whose outcome has arrived."
        ),
        Family(
            "fairness_demographic_parity_ratio", "gauge", _A, "min_g SR(g) / max_g SR(g) over groups with enough data."
        ),
        Family(
            "fairness_demographic_parity_difference",
            "gauge",
            _A,
            "max_g SR(g) - min_g SR(g) over groups with enough data.",
        ),
        Family(
            "fairness_equalized_odds_gap",
            "gauge",
            _A,
            "max(TPR spread, FPR spread) over groups with enough labeled data.",
        ),
        Family("fairness_decisions_total", "counter", _C + ("decision",), "Decisions counted, by group and decision."),
        Family("fairness_outcomes_total", "counter", _C + ("decision", "label"), "Outcomes joined to their decisions."),
        Family("fairness_calibration_count_total", "counter", _C + ("bin",), "Labeled decisions per calibration bin."),
        Family(
            "fairness_calibration_score_sum_total",
            "counter",
            _C + ("bin",),
            "Sum of scores of labeled decisions per bin.",
        ),
        Family(
            "fairness_calibration_label_sum_total",
            "counter",
            _C + ("bin",),
            "Sum of labels of labeled decisions per bin.",
        ),
        Family(
            "fairwatch_events_total",
            "counter",
            ("topic", "result", "reason"),
            "Events read, by result (ok, invalid, duplicate, late) and reason.",
        ),
        Family(
            "fairwatch_outcome_joins_total",
            "counter",
            ("model", "result"),
            "Outcome joins: joined, expired (decision never labeled), orphaned (outcome never matched),"
            " superseded (the decision carried its own label).",
        ),
        Family(
            "fairwatch_dead_letters_total",
            "counter",
            ("topic", "result", "reason"),
            "Dead letters by result: written, truncated (original too large: prefix, length and SHA-256 kept),"
            " undeliverable (reason = the producer's error; the event was counted and passed).",
        ),
        Family("fairwatch_consumer_lag", "gauge", ("topic", "partition"), "Kafka consumer lag in messages."),
        Family("fairwatch_pending_outcomes", "gauge", ("model",), "Decisions waiting for their outcome."),
        Family("fairwatch_last_checkpoint_timestamp_seconds", "gauge", (), "Wall time of the last durable checkpoint."),
        Family("fairwatch_build_info", "gauge", ("version",), "fairwatch build; value is always 1."),
        Family(
            "fairwatch_evaluator",
            "gauge",
            ("replica",),
            "1 on the replica that merges every partition, exports the fairness_* gauges and acts; else 0.",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float

    def to_json(self) -> dict:
        return {"name": self.name, "labels": self.labels, "value": self.value}


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    """Structured metrics of one (model, window, attribute), with confidence intervals."""

    model: str
    window: str
    metrics: AttributeMetrics


@dataclass(frozen=True, slots=True)
class ModelCounts:
    """One model's cumulative counters as tables (what its ``fairness_decisions_total``,
    ``fairness_outcomes_total`` and ``fairness_calibration_*_total`` samples say), for the
    groups with at least one decision or outcome, in the order of those samples.

    ``dec (G, 2)``, ``lab (G, 2, 2)`` by decision and label; ``cal_n``, ``cal_s``, ``cal_l
    (G, bins)``: labeled decisions, score and label sums per score bin. Floats, copies.
    """

    names: list[tuple[str, str]]
    dec: np.ndarray
    lab: np.ndarray
    cal_n: np.ndarray
    cal_s: np.ndarray
    cal_l: np.ndarray


@dataclass(frozen=True)
class Snapshot:
    """Immutable result of one evaluation.

    ``counts``: each model's counters as tables (:class:`ModelCounts`), set by the engine that
    built the samples; ``None`` for a snapshot put together elsewhere (merged partials, tests),
    whose readers take the counters from ``samples``.
    """

    created: float
    samples: tuple[Sample, ...]
    windows: tuple[WindowMetrics, ...] = ()
    event_time: dict[str, float] = field(default_factory=dict)
    counts: Mapping[str, ModelCounts] | None = None

    def to_json(self) -> list[dict]:
        """The ``--snapshot`` format (docs/files.md, "Snapshot JSON"): ``[{"name", "labels", "value"}, …]``."""
        return [s.to_json() for s in self.samples]

    def value(self, name: str, **labels: str) -> float | None:
        for s in self.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        return None

    def select(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]

    def with_samples(self, extra: Iterable[Sample]) -> Snapshot:
        return Snapshot(self.created, self.samples + tuple(extra), self.windows, self.event_time, self.counts)


class SnapshotBoard:
    """Holds the latest published snapshot; readers never block writers for long."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def read(self) -> Snapshot | None:
        with self._lock:
            return self._snapshot
