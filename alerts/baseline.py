"""Approved baselines: what "degradation" is measured against (docs/alerts.md).

A baseline is ``{model: {metric: {attribute: value}}}``. Sources, highest priority
first: the baseline file (written by ``fairwatch baseline set``, i.e. approved by a
person), the ``alerts.baselines`` config, a baseline learned from a named period of
event time (:class:`BaselineLearner`).

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "b.json")
>>> store = BaselineStore(path)
>>> store.set("m", {"demographic_parity_ratio": {"race": 0.95}}, source="report r1")
>>> BaselineStore(path).get("m", "demographic_parity_ratio", "race")
0.95
>>> store.get("m", "accuracy", "race") is None
True
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fairwatch.monitor.snapshot import Snapshot

from .config import METRICS

__all__ = ["BaselineStore", "BaselineLearner", "baseline_from_report", "BAD_REPORT"]

BAD_REPORT = "{path}: cannot read a baseline from this report ({why})"

#: pipeline report keys (intervention ``Candidate.metrics``) → our metric names
_REPORT_KEYS = {
    "dp_ratio": "demographic_parity_ratio",
    "eo_gap": "equalized_odds_gap",
    "max_group_ece": "expected_calibration_error",
    "min_disparate_impact": "disparate_impact",
    "accuracy": "accuracy",
}
#: snapshot gauge → (metric, reducer over groups)
_SNAPSHOT_KEYS = {
    "fairness_demographic_parity_ratio": ("demographic_parity_ratio", None),
    "fairness_equalized_odds_gap": ("equalized_odds_gap", None),
    "fairness_expected_calibration_error": ("expected_calibration_error", max),
    "fairness_accuracy": ("accuracy", min),
    "fairness_disparate_impact": ("disparate_impact", min),
}


class BaselineStore:
    """A small JSON file of approved baselines, rewritten atomically."""

    def __init__(self, path: str | os.PathLike[str], *, defaults: Mapping[str, Mapping] | None = None):
        self.path = Path(path)
        self.defaults = {m: {k: dict(v) for k, v in vals.items()} for m, vals in (defaults or {}).items()}
        self._learned: dict[str, dict[str, dict[str, float]]] = {}
        self._cache: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._cache is None:
            try:
                self._cache = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                self._cache = {}
        return self._cache

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every model's effective baseline with its source (for ``baseline show``)."""
        out: dict[str, dict[str, Any]] = {}
        for model, vals in self._learned.items():
            out[model] = {"values": vals, "source": "learned"}
        for model, vals in self.defaults.items():
            out[model] = {"values": vals, "source": "config"}
        for model, entry in self._load().items():
            out[model] = entry
        return out

    def values(self, model: str) -> dict[str, dict[str, float]]:
        entry = self._load().get(model)
        if entry is not None:
            return entry["values"]
        if model in self.defaults:
            return self.defaults[model]
        return self._learned.get(model, {})

    def get(self, model: str, metric: str, attribute: str) -> float | None:
        v = self.values(model).get(metric, {}).get(attribute)
        return None if v is None else float(v)

    def learned(self, model: str, values: dict[str, dict[str, float]]) -> None:
        """A baseline learned from a period; used only where nothing approved exists."""
        self._learned[model] = values

    def set(
        self, model: str, values: Mapping[str, Mapping[str, float]], *, source: str, approved_by: str | None = None
    ) -> None:
        for metric, per_attr in values.items():
            if metric not in METRICS:
                raise ValueError(f"baseline metric {metric!r} unknown; valid: {sorted(METRICS)}")
            for attr, v in per_attr.items():
                if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                    raise ValueError(f"baseline {metric}[{attr!r}] must be a finite number, got {v!r}")
        data = dict(self._load())
        data[model] = {
            "values": {m: {a: float(v) for a, v in pa.items()} for m, pa in values.items()},
            "source": source,
            "approved_by": approved_by,
            "set_at": time.time(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, self.path)
        self._cache = data


class BaselineLearner:
    """Averages the point values of one window over a named period of event time.

    >>> from fairwatch.monitor.snapshot import Sample, Snapshot
    >>> learner = BaselineLearner(start=0.0, end=100.0, window="24h")
    >>> s = lambda t, v: Snapshot(t, (Sample("fairness_demographic_parity_ratio",
    ...     {"model": "m", "window": "24h", "attribute": "race"}, v),), event_time={"m": t})
    >>> learner.observe(s(10.0, 0.9)); learner.observe(s(50.0, 1.0)); learner.observe(s(150.0, 0.2))
    >>> learner.done("m"), learner.result("m")
    (True, {'demographic_parity_ratio': {'race': 0.95}})
    """

    def __init__(self, *, start: float, end: float, window: str):
        if not end > start:
            raise ValueError(f"learn_baseline: end must be after start, got [{start!r}, {end!r}]")
        self.start, self.end, self.window = float(start), float(end), window
        self._sums: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
        self._last: dict[str, float] = {}

    def observe(self, snap: Snapshot) -> None:
        for model, t in snap.event_time.items():
            self._last[model] = t
        per_model: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
        for s in snap.samples:
            spec = _SNAPSHOT_KEYS.get(s.name)
            if spec is None or s.labels.get("window") != self.window:
                continue
            model = s.labels["model"]
            t = snap.event_time.get(model, snap.created)
            if not self.start <= t <= self.end:
                continue
            per_model[model][(spec[0], s.labels["attribute"])].append(s.value)
        for model, items in per_model.items():
            for (metric, attr), vals in items.items():
                reducer = _SNAPSHOT_KEYS[next(k for k, v in _SNAPSHOT_KEYS.items() if v[0] == metric)][1]
                v = reducer(vals) if reducer else vals[0]
                acc = self._sums[model][(metric, attr)]
                acc[0] += v
                acc[1] += 1

    def done(self, model: str) -> bool:
        return self._last.get(model, -math.inf) > self.end

    def result(self, model: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for (metric, attr), (total, n) in sorted(self._sums.get(model, {}).items()):
            if n:
                out[metric][attr] = round(total / n, 6)
        return dict(out)


def baseline_from_report(
    path: str | os.PathLike[str], *, model: str | None = None, window: str | None = None, attribute: str | None = None
) -> tuple[str, dict[str, dict[str, float]]]:
    """``(model, values)`` from a pipeline report (``final.metrics``) or a ``--snapshot`` JSON.

    Raises ``ValueError`` (message :data:`BAD_REPORT`) when the file cannot be used.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(BAD_REPORT.format(path=p, why="file not found")) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(BAD_REPORT.format(path=p, why=f"not JSON: {exc}")) from None
    if isinstance(data, list):  # a --snapshot file (docs/files.md)
        values: dict[str, dict[str, float]] = defaultdict(dict)
        models = sorted({e.get("labels", {}).get("model") for e in data if isinstance(e, dict)} - {None})
        if not models:
            raise ValueError(BAD_REPORT.format(path=p, why="snapshot has no model labels"))
        chosen = model or models[0]
        windows = sorted({e["labels"].get("window") for e in data if e.get("name") in _SNAPSHOT_KEYS} - {None})
        win = window or (windows[-1] if windows else None)
        groups: dict[tuple[str, str], list[float]] = defaultdict(list)
        for e in data:
            spec = _SNAPSHOT_KEYS.get(e.get("name"))
            lab = e.get("labels", {})
            if spec and lab.get("model") == chosen and lab.get("window") == win:
                groups[(spec[0], lab["attribute"])].append(float(e["value"]))
        for (metric, attr), vals in groups.items():
            reducer = next(v[1] for v in _SNAPSHOT_KEYS.values() if v[0] == metric)
            values[metric][attr] = reducer(vals) if reducer else vals[0]
        if not values:
            raise ValueError(BAD_REPORT.format(path=p, why=f"no fairness gauges for model {chosen!r} window {win!r}"))
        return chosen, dict(values)
    if not isinstance(data, dict):
        raise ValueError(BAD_REPORT.format(path=p, why=f"expected an object or a list, got {type(data).__name__}"))
    metrics = (data.get("final") or {}).get("metrics") if isinstance(data.get("final"), dict) else None
    metrics = metrics or data.get("metrics")
    if not isinstance(metrics, dict):
        raise ValueError(BAD_REPORT.format(path=p, why="no 'final.metrics' or 'metrics' object"))
    chosen = model or data.get("model")
    if not chosen:
        raise ValueError(BAD_REPORT.format(path=p, why="no 'model' in the report; pass --model"))
    attr = attribute or (data.get("data") or {}).get("primary_attribute") or data.get("attribute")
    if not attr:
        raise ValueError(BAD_REPORT.format(path=p, why="no primary attribute in the report; pass --attribute"))
    out: dict[str, dict[str, float]] = {}
    for key, metric in _REPORT_KEYS.items():
        v = metrics.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.setdefault(metric, {})[attr] = float(v)
    if not out:
        raise ValueError(BAD_REPORT.format(path=p, why=f"none of {sorted(_REPORT_KEYS)} in the metrics"))
    return str(chosen), out
