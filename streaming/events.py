"""Event schema (docs/events.md): bytes → validated decision/outcome records.

The public names of :mod:`fairwatch.streaming.schema` (the schema and the
per-event validator) and :mod:`fairwatch.streaming.batch` (the batch fast path),
in one place.

>>> decode_decision_batch([b'{"schema":"decision/v1"}'])[1][0][1].reason
'missing_field:decision_id'
>>> stamps_column(["2026-11-21T10:15:00.123456Z"]).tolist() == [parse_timestamp("2026-11-21T10:15:00.123456Z")]
True
"""

from __future__ import annotations

from fairwatch.streaming import batch as _batch
from fairwatch.streaming import schema as _schema
from fairwatch.streaming.batch import *  # noqa: F403
from fairwatch.streaming.schema import *  # noqa: F403

__all__ = [*_schema.__all__, *_batch.__all__]
