"""Event schema (DESIGN §2): bytes → validated decision/outcome records.

The public names of :mod:`fairwatch.streaming.schema` (the schema and the
per-event validator), :mod:`fairwatch.streaming.batch` (the batch fast path)
and :mod:`fairwatch.streaming.stamps` (vectorised RFC 3339), in one place.

Every rejection carries a stable machine-readable ``reason`` (used as the
``reason`` label of ``fairwatch_events_total`` and in dead letters) and a
human message naming the field and showing the bad value.

>>> raw = (b'{"schema":"decision/v1","decision_id":"d1","model":"loan","model_version":"v3",'
...        b'"ts":"2026-11-21T10:15:00.123Z","score":0.73,"decision":1,'
...        b'"attributes":{"race":"Black","sex":"Female"}}')
>>> d = decode_decision(raw)
>>> d.decision_id, d.ts, d.score, d.decision, d.label, d.attributes["race"]
('d1', 1795256100.123, 0.73, 1, -1, 'Black')
>>> decode_decision(b'{"schema":"decision/v1"}').reason
'missing_field:decision_id'
>>> decode_decision(raw.replace(b"0.73", b"1.5")).message
'score: must be in [0, 1], got 1.5'
"""

from __future__ import annotations

from fairwatch.streaming.batch import AttributeRegistry, DecisionColumns, decode_decision_batch
from fairwatch.streaming.schema import (
    DECISION_SCHEMA,
    MAX_EVENT_BYTES,
    MAX_TS,
    MIN_TS,
    MISSING_GROUP,
    OTHER_GROUP,
    OUTCOME_SCHEMA,
    REASONS,
    RESERVED_GROUPS,
    Decision,
    EventError,
    Outcome,
    Rejection,
    decision_fields,
    decode_decision,
    decode_outcome,
    outcome_fields,
    parse_timestamp,
    validate_decision,
    validate_outcome,
)
from fairwatch.streaming.stamps import stamps_to_epoch

__all__ = [
    "DECISION_SCHEMA",
    "OUTCOME_SCHEMA",
    "MAX_EVENT_BYTES",
    "MIN_TS",
    "MAX_TS",
    "MISSING_GROUP",
    "OTHER_GROUP",
    "RESERVED_GROUPS",
    "Decision",
    "Outcome",
    "Rejection",
    "EventError",
    "decode_decision",
    "decode_outcome",
    "decision_fields",
    "decode_decision_batch",
    "DecisionColumns",
    "AttributeRegistry",
    "stamps_to_epoch",
    "outcome_fields",
    "validate_decision",
    "validate_outcome",
    "parse_timestamp",
    "REASONS",
]
