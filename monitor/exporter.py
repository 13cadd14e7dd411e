"""Prometheus exposition of the latest snapshot (docs/metrics.md, "Prometheus names").

A custom collector builds fresh metric families from the snapshot the engine
published; a scrape never computes and never does I/O, and never raises: no
snapshot yet means no series.

>>> from prometheus_client import CollectorRegistry
>>> from fairwatch.monitor.snapshot import Sample, Snapshot, SnapshotBoard
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

import errno
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from wsgiref.simple_server import WSGIRequestHandler, make_server

from fairwatch.monitor.snapshot import FAMILIES, Family, SnapshotBoard
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from fairwatch.errors import FairwatchError

__all__ = ["FairnessCollector", "ListenError", "serve_metrics"]


class ListenError(FairwatchError):
    """The metrics endpoint cannot listen on its address (the port is taken, the host is not
    this machine's, …): names the address and the reason."""


log = logging.getLogger("fairwatch.exporter")


def _family(f: Family) -> Metric:
    if f.kind == "counter":
        return CounterMetricFamily(f.name.removesuffix("_total"), f.doc, labels=f.labels)
    return GaugeMetricFamily(f.name, f.doc, labels=f.labels)


class FairnessCollector(Collector):
    """Exports the latest published snapshot; a scrape never computes."""

    def __init__(
        self,
        board: SnapshotBoard,
        *,
        registry: CollectorRegistry | None = None,
        families: Mapping[str, Family] = FAMILIES,
    ):
        """``families``: what to export (default: the monitor's own); samples of other names are skipped."""
        self.board = board
        self.families = families
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterator[Metric]:
        for f in self.families.values():
            yield _family(f)

    def collect(self) -> Iterator[Metric]:
        snap = self.board.read()
        if snap is None:
            return
        grouped: dict[str, list] = defaultdict(list)
        for s in snap.samples:
            grouped[s.name].append(s)
        for name, samples in grouped.items():
            f = self.families.get(name)
            if f is None:
                continue
            fam = _family(f)
            for s in samples:
                try:
                    fam.add_metric([s.labels[k] for k in f.labels], s.value)
                except KeyError:  # a malformed sample never breaks a scrape
                    log.warning("sample %s lacks labels %s", name, f.labels)
            yield fam


def _rendered_once_per_snapshot(board: SnapshotBoard, metrics_app):
    """The exposition is rendered once per published snapshot (and per request format:
    Accept, Accept-Encoding, query); more scrapes — an HA pair of Prometheus servers,
    a person with curl — then cost no rendering, only the copy to the socket."""
    cache: dict = {}
    lock = threading.Lock()

    def app(environ, start_response):
        snap = board.read()
        key = tuple(environ.get(k, "") for k in ("HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING", "QUERY_STRING"))
        with lock:
            hit = cache.get(key) if cache.get("snapshot") is snap else None
        if hit is None:
            captured: list = []
            body = b"".join(
                metrics_app(environ, lambda status, headers, exc_info=None: captured.extend((status, headers)))
            )
            hit = (captured[0], captured[1], body)
            with lock:
                if cache.get("snapshot") is not snap:
                    cache.clear()
                    cache["snapshot"] = snap
                cache[key] = hit
        start_response(hit[0], list(hit[1]))
        return [hit[2]]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        return None


def serve_metrics(
    board: SnapshotBoard,
    *,
    host: str = "0.0.0.0",
    port: int = 9108,
    health: Callable[[], tuple[bool, bool, str]] | None = None,
    routes: Mapping[str, Callable[[], tuple[str, bytes]]] | None = None,
    families: Mapping[str, Family] = FAMILIES,
):
    """Serve ``/metrics``, ``/healthz`` and ``/readyz``; returns ``(server, thread)``.

    ``families``: the metric families to export (the application passes its own list,
    :data:`fairwatch.app.families.FAMILIES`, which adds the alert layer's).

    ``health()`` returns ``(alive, ready, detail)``; without it both probes say ok.
    ``routes`` adds read-only ``GET`` endpoints: path → ``() -> (content type, body)``
    (the daemon's ``/jobs``).
    """
    registry = CollectorRegistry()
    FairnessCollector(board, registry=registry, families=families)
    metrics_app = _rendered_once_per_snapshot(board, make_wsgi_app(registry))

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/readyz"):
            alive, ready, detail = health() if health else (True, True, "ok")
            ok = alive if path == "/healthz" else alive and ready
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [(detail + "\n").encode()]
        if routes and path in routes:
            ctype, body = routes[path]()
            start_response("200 OK", [("Content-Type", ctype)])
            return [body]
        return metrics_app(environ, start_response)

    try:
        server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    except OSError as exc:
        hint = " (another process holds the port: a fairwatch still running?)" if exc.errno == errno.EADDRINUSE else ""
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    thread = threading.Thread(target=server.serve_forever, name="fairwatch-http", daemon=True)
    thread.start()
    log.info("metrics endpoint listening", extra={"host": host, "port": server.server_port})
    return server, thread
