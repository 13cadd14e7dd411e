"""Event schema (docs/events.md): bytes → validated decision/outcome records.

The public names of :mod:`fairwatch.streaming.schema` (the schema and the
per-event validator), :mod:`fairwatch.streaming.batch` (the batch fast path)
and :mod:`fairwatch.streaming.stamps` (vectorised RFC 3339), in one place.

>>> decode_decision_batch([b'{"schema":"decision/v1"}'])[1][0][1].reason
'missing_field:decision_id'
>>> stamps_to_epoch(["2026-11-21T10:15:00.123456Z"]).tolist() == [parse_timestamp("2026-11-21T10:15:00.123456Z")]
True
"""

from __future__ import annotations

from fairwatch.streaming import batch as _batch
from fairwatch.streaming import schema as _schema
from fairwatch.streaming import stamps as _stamps
from fairwatch.streaming.batch import *  # noqa: F403
from fairwatch.streaming.schema import *  # noqa: F403
from fairwatch.streaming.stamps import *  # noqa: F403

__all__ = [*_schema.__all__, *_batch.__all__, *_stamps.__all__]
