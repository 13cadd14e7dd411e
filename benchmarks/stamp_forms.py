"""Timestamp forms of the throughput benchmarks: the simulator's events with ``ts`` rewritten.

The simulator writes ``YYYY-MM-DDTHH:MM:SS.mmmZ``; producers in the wild write
what their language's formatter gives. Each form here carries the same instant.

    >>> raw = b'{"ts":"2026-11-21T10:15:00.120Z","x":1}'
    >>> [restamp([raw], f)[0].decode() for f in FORMS]  # doctest: +NORMALIZE_WHITESPACE
    ['{"ts":"2026-11-21T10:15:00.120Z","x":1}', '{"ts":"2026-11-21T10:15:00.120000Z","x":1}',
     '{"ts":"2026-11-21T10:15:00.120000+00:00","x":1}', '{"ts":"2026-11-21T10:15:00Z","x":1}',
     '{"ts":1795256100.12,"x":1}']
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["FORMS", "restamp"]

_TS = re.compile(rb'"ts":"([^"]*)"')


def _iso(text: bytes) -> datetime:
    return datetime.fromisoformat(text.decode())


#: form name → the new ``"ts":…`` member for an old stamp (``datetime.isoformat()`` gives
#: microseconds, and no fraction at all when they are zero).
FORMS = {
    "ms_Z": lambda t: b'"ts":"' + t + b'"',
    "us_Z": lambda t: b'"ts":"' + _iso(t).replace(tzinfo=None).isoformat().encode() + b'Z"',
    "+00:00": lambda t: b'"ts":"' + _iso(t).astimezone(UTC).isoformat().encode() + b'"',
    "no_fraction_Z": lambda t: b'"ts":"' + _iso(t).strftime("%Y-%m-%dT%H:%M:%SZ").encode() + b'"',
    "epoch_seconds": lambda t: b'"ts":' + repr(_iso(t).timestamp()).encode(),
}


def restamp(events: list[bytes], form: str) -> list[bytes]:
    """``events`` with every ``"ts":"…"`` member written in ``form`` (one of :data:`FORMS`)."""
    if form == "ms_Z":
        return events
    new = FORMS[form]
    return [_TS.sub(lambda m: new(m.group(1)), e, count=1) for e in events]
