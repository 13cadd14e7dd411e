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

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from fairwatch.monitor.engine_state import ModelState, models_blob, models_from_blob
from fairwatch.monitor.ingest import apply_decisions, apply_outcomes, ingest_decisions, ingest_outcomes
from fairwatch.monitor.samples import VERSION, build_snapshot
from fairwatch.monitor.snapshot import Snapshot
from fairwatch.monitor.stats import GroupCounts
from fairwatch.monitor.windows import WindowSpec
from fairwatch.streaming.batch import AttributeRegistry, DecisionColumns, OutcomeColumns
from fairwatch.streaming.schema import Rejection

if TYPE_CHECKING:
    from fairwatch.monitor.daily import EventDays

__all__ = ["Engine", "EngineSettings", "VERSION", "ModelState"]

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


class Engine:
    """Applies micro-batches of raw events and produces snapshots."""

    def __init__(self, settings: EngineSettings | None = None, *, observer: CountObserver | None = None):
        self.settings = settings or EngineSettings()
        self.observer = observer
        self.settings.window_specs()  # fail early on a bad window name
        self.models: dict[str, ModelState] = {}
        self.events: Counter[tuple[str, str, str]] = Counter()
        self.touched: set[str] = set()  # models the last process() call updated
        #: set for one process() call: its events counted by event day (the audit's reconciliation)
        self.event_days: EventDays | None = None
        self.attribute_sets = AttributeRegistry()  # this engine's own: ids mean nothing to another

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
        event_days: EventDays | None = None,
    ) -> list[Rejection]:
        """Apply one micro-batch; returns the rejected events (for the dead-letter sink).

        ``now`` is the source's clock for the future-skew check (``None`` for a
        replay of history). ``*_meta`` are (partition, offset) per event. ``event_days``,
        if given, receives every event's result by its event day and each message's day.
        """
        rejected: list[Rejection] = []
        self.touched = set()
        self.event_days = event_days
        try:
            if decisions:
                ingest_decisions(self, decisions, now, decision_meta, decision_topic, rejected)
            if outcomes:
                ingest_outcomes(self, outcomes, now, outcome_meta, outcome_topic, rejected)
        finally:
            self.event_days = None
        return rejected

    def apply_decisions(
        self,
        decisions: DecisionColumns,
        *,
        rejections: Sequence[Rejection] = (),
        topic: str = DECISIONS_TOPIC,
    ) -> None:
        """Apply decisions already validated by :func:`~fairwatch.streaming.batch.decode_decision_batch`
        with this engine's ``attribute_sets`` (a backtest reads each decision once, for its time and
        its fields) and count their batch's ``rejections``. As :meth:`process` for those lines."""
        if decisions.registry is not self.attribute_sets:
            raise ValueError("decisions: decoded with another attribute-set registry than this engine's")
        for r in rejections:
            self.events[(topic, "invalid", r.reason)] += 1
        apply_decisions(self, decisions, topic)

    def apply_outcomes(
        self,
        outcomes: OutcomeColumns,
        *,
        rejections: Sequence[Rejection] = (),
        topic: str = OUTCOMES_TOPIC,
    ) -> None:
        """Apply outcomes already validated by :func:`~fairwatch.streaming.batch.decode_outcome_batch`
        (a replay reads each outcome once, for its time and its fields) and count their
        batch's ``rejections``. The models they update join ``touched``."""
        for r in rejections:
            self.events[(topic, "invalid", r.reason)] += 1
        apply_outcomes(self, outcomes, topic)

    # -- evaluation ------------------------------------------------------------
    def snapshot(self, *, now: float | None = None, counters_only: bool = False) -> Snapshot:
        """Compute every metric of every window (docs/metrics.md) and the counters
        (``counters_only``: the counters alone, without the window statistics)."""
        return build_snapshot(self, now=now, counters_only=counters_only)

    # -- checkpoints -----------------------------------------------------------
    def state_blob(self, models: Iterable[str] | None = None, *, events: Mapping | None = None) -> bytes:
        """Checkpoint of ``models`` (default: all) and an events ledger as one blob."""
        names = sorted(self.models if models is None else set(models) & set(self.models))
        return models_blob(self.models, names, self.events if events is None else events)

    def restore_blob(self, blob: bytes) -> tuple[Counter[tuple[str, str, str]], list[str]]:
        """Load the models of a checkpoint blob (replacing same-named ones).

        Returns the blob's events ledger and the names of the models it held.
        """
        states, ledger = models_from_blob(blob, self.settings, self.observer)
        for st in states:
            self.models[st.model] = st
        return ledger, [st.model for st in states]

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
