"""Event-time sliding windows built from fixed buckets (docs/metrics.md, "Windows").

Everything about time lives here: bucket indices, the watermark, lateness, and
which buckets make up a window. Windows *wrap* statistics: a :class:`BucketRing`
holds one :class:`~fairwatch.monitor.stats.CountsTable` slot per live bucket and knows
nothing about fairness.

Semantics, in the order the engine applies them:

* bucket ``k`` of an event = ``floor(ts / width)``; ``width = window / buckets``.
* the watermark = max event time seen − ``allowed_lateness``.
* an event is *late* (counted, skipped) when it is older than the oldest live
  bucket: ``ts < watermark − (longest window + label maturity)``.
* a window of ``n`` buckets ending at head bucket ``H`` holds buckets
  ``H−n+1 … H`` (the newest one still filling); its outcome metrics use buckets
  ``H−m−n+1 … H−m`` where ``m`` = label maturity in buckets.

>>> spec = WindowSpec.parse("1h", buckets=60)
>>> spec.name, spec.seconds, spec.width
('1h', 3600.0, 60.0)
>>> ring = BucketRing(spec, groups=1, bins=10, maturity_buckets=0, lateness=0.0)
>>> ring.advance(np.array([100]))
>>> ring.slots, ring.head   # 60 window buckets + the one the window edge cuts through
(61, 100)
>>> ring.live_mask(np.array([39, 40, 41, 100, 101])).tolist()
[False, True, True, True, False]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from fairwatch.monitor.stats import CountsTable

__all__ = ["parse_duration", "format_duration", "WindowSpec", "BucketRing"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}
MSG_DURATION = "invalid duration {value!r} (use a number of seconds or e.g. 30s, 5m, 1h, 7d)"


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``"90d"``, ``"5m"``, ``"10s"``, ``"1.5h"`` or a number of seconds.

    >>> parse_duration("7d"), parse_duration("5m"), parse_duration(30)
    (604800.0, 300.0, 30.0)
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ...
    ValueError: invalid duration 'soon' (use a number of seconds or e.g. 30s, 5m, 1h, 7d)
    """
    if isinstance(value, bool):
        raise ValueError(MSG_DURATION.format(value=value))
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(MSG_DURATION.format(value=value))
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(MSG_DURATION.format(value=value))
    return float(m.group(1)) * _UNIT[m.group(2)]


def format_duration(seconds: float) -> str:
    """Shortest exact name of a number of seconds (for messages; window names come from config).

    >>> format_duration(3600), format_duration(604800), format_duration(90)
    ('1h', '7d', '90s')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A named sliding window: its length and bucket width."""

    name: str
    seconds: float
    buckets: int

    @classmethod
    def parse(cls, name: str, *, buckets: int = 60) -> WindowSpec:
        seconds = parse_duration(name)
        if seconds <= 0:
            raise ValueError(f"window {name!r}: must be longer than 0 s")
        if buckets < 1:
            raise ValueError(f"window {name!r}: buckets must be ≥ 1, got {buckets!r}")
        return cls(str(name), seconds, buckets)

    @property
    def width(self) -> float:
        return self.seconds / self.buckets


class BucketRing:
    """The live buckets of one window as a ring of :class:`CountsTable` slots.

    Holds ``buckets + maturity + lateness`` buckets (+1 for the filling one), so
    memory is fixed by configuration, never by traffic.
    """

    __slots__ = ("spec", "maturity_buckets", "slots", "table", "bucket_of_slot", "head")

    def __init__(
        self,
        spec: WindowSpec,
        *,
        groups: int,
        bins: int,
        maturity_buckets: int,
        lateness: float,
    ):
        self.spec = spec
        self.maturity_buckets = maturity_buckets
        self.slots = spec.buckets + maturity_buckets + math.ceil(lateness / spec.width) + 1
        self.table = CountsTable((self.slots,), groups=groups, bins=bins)
        self.bucket_of_slot = np.full(self.slots, np.iinfo(np.int64).min, np.int64)
        self.head: int | None = None

    def bucket(self, ts: np.ndarray) -> np.ndarray:
        """Bucket index of each event time."""
        return np.floor(ts / self.spec.width).astype(np.int64)

    def advance(self, buckets: np.ndarray) -> None:
        """Move the head to the newest bucket in ``buckets``; reuse the slots that expire."""
        if len(buckets) == 0:
            return
        newest = int(buckets.max())
        if self.head is not None and newest <= self.head:
            return
        self.head = newest
        s = np.arange(self.slots, dtype=np.int64)
        expected = newest - ((newest - s) % self.slots)
        stale = self.bucket_of_slot != expected
        if stale.any():
            self.table.clear(stale)
            self.bucket_of_slot[stale] = expected[stale]

    def live_mask(self, buckets: np.ndarray) -> np.ndarray:
        """Which buckets are still held by the ring."""
        if self.head is None:
            return np.zeros(len(buckets), bool)
        return (buckets > self.head - self.slots) & (buckets <= self.head)

    def slot(self, buckets: np.ndarray) -> np.ndarray:
        return buckets % self.slots

    def window_slots(self, *, shift: int = 0) -> np.ndarray:
        """Slots of the window's buckets ``head−shift−n+1 … head−shift``."""
        if self.head is None:
            return np.zeros(0, np.int64)
        end = self.head - shift
        ks = self.bucket_of_slot
        return np.nonzero((ks > end - self.spec.buckets) & (ks <= end))[0]

    def decision_window(self) -> CountsTable:
        return self.table.sum_lead(self.window_slots())

    def outcome_window(self) -> CountsTable:
        return self.table.sum_lead(self.window_slots(shift=self.maturity_buckets))
