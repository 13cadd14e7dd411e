"""The alert loop's memory survives a restart: a loop restored from its dump goes on exactly as if never stopped."""

from __future__ import annotations

import json

import orjson
import pytest
from fairwatch.alerts.audit import MemoryAuditLog
from fairwatch.alerts.config import AlertsConfig
from fairwatch.alerts.durable import dump, restore
from fairwatch.alerts.loop import AlertLoop
from fairwatch.monitor.engine import Engine, EngineSettings
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay

STEP = 30.0


def _loop(tmp_path, name: str) -> tuple[AlertLoop, MemoryAuditLog]:
    flags = tmp_path / f"{name}.flags.json"
    flags.write_text(
        json.dumps(
            {
                "flags": {
                    "loan-model": {"state": "ENABLED", "variants": {"v2": "v2", "v3": "v3"}, "defaultVariant": "v3"}
                }
            }
        )
    )
    cfg = AlertsConfig.model_validate(
        {
            "baseline_path": str(tmp_path / f"{name}.baseline.json"),
            "evaluation_interval": STEP,
            "rollback": {
                "flag_store": {"kind": "flagd-file", "path": str(flags)},
                "models": {"loan-approval": {"flag": "loan-model", "rollback_to": "v2"}},
            },
        }
    )
    audit = MemoryAuditLog()
    return AlertLoop(cfg, audit=audit), audit


def _changes(loop: AlertLoop, since: int = 0) -> list[tuple]:
    return [(c.at, c.metric, c.attribute, c.group, c.previous, c.tier) for c in loop.changes[since:]]


def _acts(audit: MemoryAuditLog, since: int = 0) -> list[tuple]:
    return [(e["kind"], e.get("incident")) for e in audit.entries()[since:]]


@pytest.mark.parametrize("stop_at", [50, 75, 100])
def test_a_loop_restored_from_its_dump_goes_on_as_if_never_stopped(tmp_path, stop_at):
    """dp-drop at evaluation 60: stopped before the drop, while evidence builds up, after the rollback.

    The uninterrupted loop and the one restarted at ``stop_at`` from its dump make the same
    tier changes at the same event times, write the same incident ids and actions to their audit
    logs after the restart (no second page, pipeline run or rollback for an incident already
    acted on), and end with byte-identical memory.
    """
    sim = LoanSimulator(seed=3, rate=10.0, scenario="dp-drop", drift_at=1800.0, delay=OutcomeDelay(median_s=600.0))
    eng = Engine(EngineSettings(windows=("1h",), buckets=12))
    whole, whole_audit = _loop(tmp_path, "whole")
    part, part_audit = _loop(tmp_path, "part")
    mark = None
    for i in range(150):
        b = sim.advance_batch(STEP)
        eng.process(decisions=b.topic_values(False), outcomes=b.topic_values(True), now=sim.now)
        snap = eng.snapshot(now=sim.now)
        if i == stop_at:  # the process dies; a new one starts from the saved memory
            blob = dump(part)
            part.close()
            part, part_audit = _loop(tmp_path, "part")
            assert restore(part, blob)
            mark = (len(whole.changes), len(whole_audit.entries()))
        whole.evaluate(snap, eng)
        part.evaluate(snap, eng)
    assert any(c.tier == 3 for c in whole.changes), "the stream must roll back for the test to mean anything"
    assert _changes(part) == _changes(whole, mark[0])
    assert _acts(part_audit) == _acts(whole_audit, mark[1])
    assert [e["kind"] for e in whole_audit.entries()].count("rollback.execute") == 1
    assert orjson.loads(dump(part)) == orjson.loads(dump(whole))
    whole.close()
    part.close()


def test_a_fresh_loop_without_memory_would_act_again(tmp_path):
    """The control: the same restart without the dump opens the incident again and re-acts (why state is kept)."""
    sim = LoanSimulator(seed=3, rate=10.0, scenario="dp-drop", drift_at=1800.0, delay=OutcomeDelay(median_s=600.0))
    eng = Engine(EngineSettings(windows=("1h",), buckets=12))
    first, first_audit = _loop(tmp_path, "first")
    for _ in range(100):
        b = sim.advance_batch(STEP)
        eng.process(decisions=b.topic_values(False), outcomes=b.topic_values(True), now=sim.now)
        first.evaluate(eng.snapshot(now=sim.now), eng)
    ids = {e["incident"] for e in first_audit.entries() if e["kind"].startswith("action.")}
    assert ids, "incidents were acted on before the restart"
    fresh, fresh_audit = _loop(tmp_path, "fresh")
    for _ in range(40):
        b = sim.advance_batch(STEP)
        eng.process(decisions=b.topic_values(False), outcomes=b.topic_values(True), now=sim.now)
        fresh.evaluate(eng.snapshot(now=sim.now), eng)
    again = {e["incident"] for e in fresh_audit.entries() if e["kind"].startswith("action.")}
    assert again & ids, "without the memory the same incident ids are reused for new incidents"
    first.close()
    fresh.close()


def test_unreadable_or_foreign_memory_leaves_the_loop_fresh(tmp_path):
    loop, _ = _loop(tmp_path, "x")
    assert not restore(loop, b"not json")
    assert not restore(loop, orjson.dumps({"format": 0}))
    assert loop.policy.evaluations == 0 and not loop.responder.incidents.open
    loop.close()
