"""Prometheus exposition of the latest snapshot (DESIGN §4).

A custom collector builds fresh metric families from the snapshot the engine
published; a scrape never computes and never does I/O, and never raises: no
snapshot yet means no series.

>>> from prometheus_client import CollectorRegistry
>>> from monitor.snapshot import Sample, Snapshot, SnapshotBoard
>>> board = SnapshotBoard()
>>> registry = CollectorRegistry()
>>> _ = FairnessCollector(board, registry=registry)
>>> board.publish(Snapshot(0.0, (Sample("fairness_demographic_parity_ratio",
...     {"model": "m", "window": "1h", "attribute": "race"}, 0.8),)))
>>> registry.get_sample_value("fairness_demographic_parity_ratio",
...     {"model": "m", "window": "1h", "attribute": "race"})
0.8
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.snapshot import FAMILIES, Family, SnapshotBoard

__all__ = ["FairnessCollector", "serve_metrics"]

log = logging.getLogger("fairwatch.exporter")


def _family(f: Family) -> Metric:
    if f.kind == "counter":
        return CounterMetricFamily(f.name.removesuffix("_total"), f.doc, labels=f.labels)
    return GaugeMetricFamily(f.name, f.doc, labels=f.labels)


class FairnessCollector(Collector):
    """Exports the latest published snapshot; a scrape never computes."""

    def __init__(self, board: SnapshotBoard, *, registry: CollectorRegistry | None = None):
        self.board = board
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterator[Metric]:
        for f in FAMILIES.values():
            yield _family(f)

    def collect(self) -> Iterator[Metric]:
        snap = self.board.read()
        if snap is None:
            return
        grouped: dict[str, list] = defaultdict(list)
        for s in snap.samples:
            grouped[s.name].append(s)
        for name, samples in grouped.items():
            f = FAMILIES.get(name)
            if f is None:
                continue
            fam = _family(f)
            for s in samples:
                try:
                    fam.add_metric([s.labels[k] for k in f.labels], s.value)
                except KeyError:  # a malformed sample never breaks a scrape
                    log.warning("sample %s lacks labels %s", name, f.labels)
            yield fam


def serve_metrics(board: SnapshotBoard, *, host: str = "0.0.0.0", port: int = 9108):
    """Start the ``/metrics`` HTTP endpoint; returns ``(server, thread)``."""
    registry = CollectorRegistry()
    FairnessCollector(board, registry=registry)
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics endpoint listening", extra={"host": host, "port": port})
    return server, thread
