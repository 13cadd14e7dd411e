"""Alertmanager-compatible notifications, sent by a background worker.

:meth:`Notifier.send` only puts the alert on a bounded queue and returns at once
(a full queue drops the new alert and counts it as ``dropped``), so
a hung Alertmanager never slows evaluation. The worker POSTs batches to
``<alertmanager_url>/api/v2/alerts`` (a JSON list of
``{labels, annotations, startsAt, endsAt, generatorURL}``) and/or to a generic
webhook (``{"version": "fairwatch/v1", "alerts": [...]}``), retrying with
exponential backoff.

>>> alert = make_alert({"model": "m", "metric": "disparate_impact", "attribute": "race",
...                     "window": "5m"}, tier=3, summary="DI low", starts_at=0.0)
>>> alert["labels"]["alertname"], alert["labels"]["severity"], alert["startsAt"]
('FairnessTier3', 'tier3', '1970-01-01T00:00:00Z')
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from .config import NotifyConfig

__all__ = ["Notifier", "make_alert", "iso"]

log = logging.getLogger("fairwatch.alerts.notify")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def make_alert(
    labels: dict[str, str],
    *,
    tier: int,
    summary: str,
    description: str = "",
    starts_at: float,
    ends_at: float | None = None,
    generator_url: str = "",
    runbook: str | None = None,
) -> dict[str, Any]:
    """One Alertmanager API v2 alert (``postableAlert``)."""
    lab = {"alertname": f"FairnessTier{tier}", "severity": f"tier{tier}", "tier": str(tier), "source": "fairwatch"}
    lab.update({k: str(v) for k, v in labels.items()})
    out: dict[str, Any] = {
        "labels": lab,
        "annotations": {
            "summary": summary,
            "description": description or summary,
            "runbook_url": runbook or f"docs/runbook.md#fairnesstier{tier}",
        },
        "startsAt": iso(starts_at),
    }
    if ends_at is not None:
        out["endsAt"] = iso(ends_at)
    if generator_url:
        out["generatorURL"] = generator_url
    return out


class Notifier:
    """Bounded queue + worker thread; ``send`` never blocks."""

    def __init__(self, config: NotifyConfig | None = None, *, environ: dict[str, str] | None = None) -> None:
        self.config = config or NotifyConfig()
        env = os.environ if environ is None else environ
        self._token = env.get(self.config.webhook_token_env) if self.config.webhook_token_env else None
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=self.config.queue_size)
        self.counts: Counter[str] = Counter()
        self.sent: list[dict[str, Any]] = []  # every alert handed to send() (for tests, demo)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def targets(self) -> list[str]:
        t = []
        if self.config.alertmanager_url:
            t.append(self.config.alertmanager_url.rstrip("/") + "/api/v2/alerts")
        if self.config.webhook_url:
            t.append(self.config.webhook_url)
        return t

    def start(self) -> Notifier:
        if self._thread is None and self.targets:
            self._thread = threading.Thread(target=self._run, name="fairwatch-notify", daemon=True)
            self._thread.start()
        return self

    def send(self, alert: dict[str, Any]) -> bool:
        """Queue ``alert``; False (and counted as dropped) when the queue is full."""
        self.sent.append(alert)
        if not self.targets:
            self.counts["no_target"] += 1
            return False
        self.start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.counts["dropped"] += 1
            log.warning("notification queue full; dropped alert %s", alert["labels"].get("alertname"))
            return False
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker; waits at most ``timeout`` (a hung endpoint is abandoned)."""
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the queue is empty (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    # -- worker -----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                break
            batch = [item]
            while len(batch) < 64:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._stop.set()
                    self._queue.task_done()
                    break
                batch.append(nxt)
            try:
                for target in self.targets:
                    self._deliver(target, batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _deliver(self, url: str, batch: list[dict[str, Any]]) -> None:
        cfg = self.config
        is_am = url.endswith("/api/v2/alerts")
        body = json.dumps(batch if is_am else {"version": "fairwatch/v1", "alerts": batch}).encode()
        headers = {"Content-Type": "application/json"}
        if self._token and not is_am:
            headers["Authorization"] = f"Bearer {self._token}"
        delay = cfg.backoff
        for attempt in range(cfg.retries + 1):
            if self._stop.is_set() and attempt > 0:
                break
            try:
                req = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=cfg.timeout) as resp:
                    resp.read()
                self.counts["sent"] += len(batch)
                return
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code != 429:
                    log.error("notification to %s rejected: HTTP %s", url, exc.code)
                    self.counts["rejected"] += len(batch)
                    return
                log.warning("notification to %s failed (HTTP %s), attempt %d", url, exc.code, attempt + 1)
            except (OSError, TimeoutError) as exc:
                log.warning("notification to %s failed (%s), attempt %d", url, exc, attempt + 1)
            self._stop.wait(delay)
            delay = min(delay * 2, cfg.backoff_max)
        self.counts["failed"] += len(batch)
