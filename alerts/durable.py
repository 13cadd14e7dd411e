"""The alert loop's memory as one JSON document, so a restart or a new evaluator goes on from it.

What it holds: the policy's tiers and state machines, the sequential evidence of every
model (CUSUM statistics, the counts it last saw, the vector state machines), the incident
book (open and recent closed incidents with their ids, the tiers already acted on and
their resend clocks), the rollback records being verified, and the incidents whose
pipeline run was queued. What it does not hold: what is rebuilt from the configuration
(detector layouts, thresholds) and the baselines (their own file).

With it, incident ids stay stable across a restart or an evaluator takeover, and an
incident whose tier was acted on is not acted on again (docs/replicas.md). A document
written under another configuration restores what still matches — evidence of detectors
and machines that still exist, by name — and drops the rest, like a reconfiguration of
the running loop.

>>> from fairwatch.alerts.loop import AlertLoop
>>> from fairwatch.alerts.audit import MemoryAuditLog
>>> loop = AlertLoop(audit=MemoryAuditLog())
>>> again = AlertLoop(audit=MemoryAuditLog())
>>> restore(again, dump(loop))
True
>>> restore(again, b'{"format": 99}')
False
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from .actions import Incident
from .rollback import RollbackRecord
from .sequential import ModelEvidence
from .tiers import TierMachine

if TYPE_CHECKING:
    from .loop import AlertLoop

__all__ = ["FORMAT", "dump", "restore"]

log = logging.getLogger("fairwatch.alerts")

#: version of the document; a document of another version is ignored (the loop starts fresh)
FORMAT = 1

#: the mutable arrays of an evidence bank and of the vector state machines (the rest is layout)
BANK_STATE = ("S", "seen", "cum_n", "cum_k", "_choice")
TIERS_STATE = ("state", "down_len", "down_max", "missing")

_INCIDENT_FIELDS = (
    "id",
    "model",
    "metric",
    "attribute",
    "first_seen",
    "last_seen",
    "tier",
    "max_tier",
    "status",
    "closed_at",
    "windows",
    "value",
    "reason",
    "actions",
    "last_sent",
)
_RECORD_FIELDS = (
    "incident",
    "model",
    "flag",
    "target",
    "previous",
    "status",
    "reason",
    "executed_at",
    "dry_run",
    "window",
    "metric",
    "attribute",
    "verification",
)


def _arrays(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for n in names:
        v = getattr(obj, n, None)
        if isinstance(v, np.ndarray):
            out[n] = {"dtype": v.dtype.str, "shape": list(v.shape), "data": v.ravel().tolist()}
    return out


def _set_arrays(obj: Any, saved: dict[str, Any]) -> bool:
    """Set the saved arrays whose shape matches the rebuilt object's; ``False`` if any did not."""
    ok = True
    for n, a in saved.items():
        cur = getattr(obj, n, None)
        arr = np.asarray(a["data"], dtype=np.dtype(a["dtype"])).reshape(a["shape"])
        if isinstance(cur, np.ndarray) and cur.shape != arr.shape:
            ok = False
            continue
        setattr(obj, n, arr)
    return ok


def _incident(d: dict[str, Any]) -> Incident:
    inc = Incident(**{k: d[k] for k in _INCIDENT_FIELDS if k in d})
    inc.ci = tuple(d["ci"]) if d.get("ci") else None
    inc.acted = set(d.get("acted", ()))
    return inc


def _incident_doc(inc: Incident) -> dict[str, Any]:
    doc = {k: getattr(inc, k) for k in _INCIDENT_FIELDS}
    doc["ci"] = list(inc.ci) if inc.ci else None
    doc["acted"] = sorted(inc.acted)
    return doc


def dump(loop: AlertLoop) -> bytes:
    """The loop's memory (see the module's docstring)."""
    pol = loop.policy
    evidence = {}
    for model, ev in pol.evidence.items():
        if ev.layout is None or ev.bank is None or ev.tiers is None:
            continue
        evidence[model] = {
            "names": [list(n) for n in ev.layout.names],
            "last": None if ev.last is None else _arrays(ev, ("last",))["last"],
            "bank": _arrays(ev.bank, BANK_STATE),
            "updates": int(getattr(ev.bank, "_updates", 0)),
            "tiers": _arrays(ev.tiers, TIERS_STATE),
        }
    book = loop.responder.incidents
    with book._lock:
        incidents = {
            "seq": book._seq,
            "open": [_incident_doc(i) for i in book.open.values()],
            "closed": [_incident_doc(i) for i in book.closed],
        }
    rollback = None
    if loop.rollback is not None:
        rb = loop.rollback
        with rb._lock:
            rollback = {
                "records": [
                    {
                        **{k: getattr(r, k) for k in _RECORD_FIELDS},
                        "base": None if r._base is None else dict(r._base),
                        "grace_base": None if r._grace_base is None else dict(r._grace_base),
                    }
                    for r in rb.records.values()
                ],
                "last_by_flag": dict(rb.last_by_flag),
                "executed": [[m, f, n] for (m, f), n in rb.executed.items()],
            }
    doc = {
        "format": FORMAT,
        "evaluations": pol.evaluations,
        "last": [[*k, st] for k, (st, _) in pol.last.items()],
        "machines": [[*k, m.state, list(m._up), list(m._down), m._missing] for k, m in pol.machines.items()],
        "evidence": evidence,
        "incidents": incidents,
        "rollback": rollback,
        "pipelines": list(loop.responder.pipeline_enqueued),
    }
    return orjson.dumps(doc)


def restore(loop: AlertLoop, blob: bytes) -> bool:
    """Replace the loop's memory with a :func:`dump`; ``False`` (and the loop untouched) if unreadable."""
    try:
        doc = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        log.warning("alert state unreadable; starting fresh", extra={"error": str(exc)})
        return False
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        log.warning("alert state of another format; starting fresh", extra={"format": doc.get("format")})
        return False
    pol = loop.policy
    pol.evaluations = int(doc["evaluations"])
    pol.last = {tuple(r[:4]): (int(r[4]), None) for r in doc["last"]}
    policy_cfg = pol.config.policy
    machines = {}
    for r in doc["machines"]:
        key = tuple(r[:4])
        mach = TierMachine(for_=policy_cfg.for_, clear_for=policy_cfg.clear_for)
        mach.state, mach._missing = int(r[4]), int(r[7])
        mach._up = deque(r[5], maxlen=mach._up.maxlen)
        mach._down = deque(r[6], maxlen=mach._down.maxlen)
        machines[key] = mach
    pol.machines = machines
    pol.evidence = {}
    partial = []
    for model, e in doc["evidence"].items():
        ev = ModelEvidence(pol.config, interval=pol.interval, reference_groups=pol.reference_groups)
        names = [tuple(n) for n in e["names"]]
        ev._relayout(names, lambda metric, attr, m=model: pol.baselines.get(m, metric, attr))
        ok = _set_arrays(ev.bank, e["bank"]) & _set_arrays(ev.tiers, e["tiers"])
        if hasattr(ev.bank, "_updates"):
            ev.bank._updates = int(e["updates"])
        if e["last"] is not None:
            _set_arrays(ev, {"last": e["last"]})
        if not ok:  # another configuration: what does not fit starts fresh, like a reconfiguration
            partial.append(model)
            ev = ModelEvidence(pol.config, interval=pol.interval, reference_groups=pol.reference_groups)
        pol.evidence[model] = ev
    book = loop.responder.incidents
    with book._lock:
        book._seq = int(doc["incidents"]["seq"])
        book.open = {(i.model, i.metric, i.attribute): i for i in map(_incident, doc["incidents"]["open"])}
        book.closed = [_incident(d) for d in doc["incidents"]["closed"]]
    if loop.rollback is not None and doc["rollback"] is not None:
        rb = loop.rollback
        with rb._lock:
            rb.records = {}
            for d in doc["rollback"]["records"]:
                rec = RollbackRecord(**{k: d[k] for k in _RECORD_FIELDS})
                rec._base = None if d["base"] is None else Counter(d["base"])
                rec._grace_base = None if d["grace_base"] is None else Counter(d["grace_base"])
                rb.records[rec.incident] = rec
            rb.last_by_flag = {k: float(v) for k, v in doc["rollback"]["last_by_flag"].items()}
            rb.executed = Counter({(m, f): int(n) for m, f, n in doc["rollback"]["executed"]})
    loop.responder.pipeline_enqueued = list(doc["pipelines"])
    log.info(
        "alert state restored",
        extra={
            "open_incidents": sorted(i.id for i in book.open.values()),
            "evaluations": pol.evaluations,
            "fresh_evidence": partial,
        },
    )
    return True
