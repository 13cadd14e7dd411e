"""fairwatch: production fairness monitoring.

The public API, for embedding the engine in your own process::

    import fairwatch
    engine = fairwatch.Engine(fairwatch.EngineSettings(windows=("1h",)))
    rejected = engine.process(decisions=[b'{"schema": "decision/v1", ...}'])
    snapshot = engine.snapshot(now=now)
    snapshot.value("fairness_demographic_parity_ratio", model="loan", window="1h", attribute="sex")

(the README's "Embedding the engine" runs a complete example).

Names load on first use (PEP 562), so ``import fairwatch`` stays cheap and the
command line starts at once. Layers, lowest first: :mod:`fairwatch.streaming`
(events, sources), :mod:`fairwatch.monitor` (statistics, windows, engine,
snapshot), :mod:`fairwatch.alerts` and :mod:`fairwatch.intervention`, and
:mod:`fairwatch.app` (CLI, daemon, demo, configuration) on top.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from fairwatch.errors import FairwatchError


def _version() -> str:
    # importlib.metadata costs more than the rest of ``import fairwatch``: read it on first use
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fairwatch")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


# public name -> module that defines it
_API = {
    "Engine": "fairwatch.monitor.engine",
    "EngineSettings": "fairwatch.monitor.engine",
    "Snapshot": "fairwatch.monitor.snapshot",
    "Sample": "fairwatch.monitor.snapshot",
    "SnapshotBoard": "fairwatch.monitor.snapshot",
    "FAMILIES": "fairwatch.app.families",
    "GroupMetrics": "fairwatch.monitor.metrics",
    "AttributeMetrics": "fairwatch.monitor.metrics",
    "attribute_metrics": "fairwatch.monitor.metrics",
    "wilson": "fairwatch.monitor.intervals",
    "katz_ratio": "fairwatch.monitor.intervals",
    "newcombe_difference": "fairwatch.monitor.intervals",
    "parse_duration": "fairwatch.monitor.windows",
    "GroupCounts": "fairwatch.monitor.stats",
    "WindowSpec": "fairwatch.monitor.windows",
    "Decision": "fairwatch.streaming.events",
    "Outcome": "fairwatch.streaming.events",
    "Rejection": "fairwatch.streaming.events",
    "EventError": "fairwatch.streaming.events",
    "REASONS": "fairwatch.streaming.events",
    "DECISION_SCHEMA": "fairwatch.streaming.events",
    "OUTCOME_SCHEMA": "fairwatch.streaming.events",
    "decode_decision": "fairwatch.streaming.events",
    "decode_outcome": "fairwatch.streaming.events",
    "load_config": "fairwatch.app.config",
    "Config": "fairwatch.app.config",
    "ConfigError": "fairwatch.app.config",
}

__all__ = [
    "__version__",
    "FairwatchError",
    "Engine",
    "EngineSettings",
    "Snapshot",
    "Sample",
    "SnapshotBoard",
    "FAMILIES",
    "GroupMetrics",
    "AttributeMetrics",
    "attribute_metrics",
    "wilson",
    "katz_ratio",
    "newcombe_difference",
    "GroupCounts",
    "WindowSpec",
    "parse_duration",
    "Decision",
    "Outcome",
    "Rejection",
    "EventError",
    "REASONS",
    "DECISION_SCHEMA",
    "OUTCOME_SCHEMA",
    "decode_decision",
    "decode_outcome",
    "load_config",
    "Config",
    "ConfigError",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = globals()["__version__"] = _version()
        return value
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'fairwatch' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    __version__: str
    from fairwatch.app.config import Config, ConfigError, load_config
    from fairwatch.app.families import FAMILIES
    from fairwatch.monitor.engine import Engine, EngineSettings
    from fairwatch.monitor.intervals import katz_ratio, newcombe_difference, wilson
    from fairwatch.monitor.metrics import AttributeMetrics, GroupMetrics, attribute_metrics
    from fairwatch.monitor.snapshot import Sample, Snapshot, SnapshotBoard
    from fairwatch.monitor.stats import GroupCounts
    from fairwatch.monitor.windows import WindowSpec, parse_duration
    from fairwatch.streaming.events import (
        DECISION_SCHEMA,
        OUTCOME_SCHEMA,
        REASONS,
        Decision,
        EventError,
        Outcome,
        Rejection,
        decode_decision,
        decode_outcome,
    )
