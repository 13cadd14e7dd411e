"""The daemon's periodic checkpoint is written off the loop, and commits only what is durable."""

from __future__ import annotations

import threading

import pytest
from fairwatch.monitor.state import Checkpoint
from fairwatch.streaming.simulator import LoanSimulator

from tests.test_export import START, _batch, _daemon

TOPIC = "fairness.decisions"


class _Source:
    """What the daemon asks of a Kafka source here: commits, in order."""

    def __init__(self):
        self.commits: list[dict[str, int]] = []

    def commit(self, offsets, *, wait=True):
        self.commits.append(dict(offsets))


class _SlowStore:
    """Wraps the real store: a save blocks until released (a slow disk)."""

    def __init__(self, store):
        self.store, self.release, self.started = store, threading.Event(), threading.Event()
        self.fail: Exception | None = None

    def save(self, cps: dict[str, Checkpoint], **kw) -> None:
        self.started.set()
        assert self.release.wait(30)
        if self.fail is not None:
            raise self.fail
        self.store.save(cps, **kw)

    def __getattr__(self, name):
        return getattr(self.store, name)


def _events(n_seconds: float, seed: int = 3) -> list[bytes]:
    sim = LoanSimulator(seed=seed, start=START, rate=1.0)
    return [e.value for e in sim.advance(n_seconds) if e.topic == TOPIC]


def _assigned_daemon(tmp_path):
    """A daemon with the recording source and the slow store (assign partitions yourself)."""
    d = _daemon(tmp_path)
    d.source = _Source()
    slow = d.store = _SlowStore(d.store)
    return d, slow


def _apply(d, events: list[bytes], first: int, last: int) -> None:
    """Apply ``events[first:last]`` as offsets ``first … last - 1`` of partition 0."""
    chunk = events[first:last]
    d._apply({0: _batch(0, chunk, [(0, i) for i in range(first, last)], {f"{TOPIC}:0": last})})


def test_background_checkpoint_commits_after_it_is_durable_and_in_order(tmp_path):
    d, slow = _assigned_daemon(tmp_path)
    d.on_assign([0])
    events = _events(300.0)
    half = len(events) // 2
    _apply(d, events, 0, half)
    d.checkpoint(background=True)
    assert slow.started.wait(10)
    # The loop goes on while the write is in flight: nothing is committed, nothing durable yet.
    _apply(d, events, half, len(events))
    assert d.source.commits == [] and slow.store.load([d._key(0)]) == {}
    assert d.saving is not None and not d.saving.done()
    # A revoke checkpoints synchronously: it first waits for the write in flight and
    # commits that one, then its own: offsets are committed in order.
    threading.Timer(0.2, slow.release.set).start()
    d.on_revoke([0])
    assert d.source.commits == [{f"{TOPIC}:0": half}, {f"{TOPIC}:0": len(events)}]
    assert slow.store.load([d._key(0)])[d._key(0)].offsets == {f"{TOPIC}:0": len(events)}
    assert d.saving is None


def test_a_failed_background_write_commits_nothing_and_fails_the_stream(tmp_path):
    d, slow = _assigned_daemon(tmp_path)
    d.on_assign([0])
    events = _events(120.0)
    _apply(d, events, 0, len(events))
    slow.fail = OSError("disk full")
    slow.release.set()
    d.checkpoint(background=True)
    with pytest.raises(OSError, match="disk full"):
        d.settle()  # the loop calls this once the write is done: the stream restarts from the last checkpoint
    assert d.source.commits == [] and slow.store.load([d._key(0)]) == {}


def test_an_assignment_after_a_failed_background_write_restores_the_last_durable_checkpoint(tmp_path):
    d, slow = _assigned_daemon(tmp_path)
    slow.release.set()
    d.on_assign([0])
    events = _events(120.0)
    half = len(events) // 2
    _apply(d, events, 0, half)
    d.checkpoint()  # durable at `half`
    _apply(d, events, half, len(events))
    slow.fail = OSError("disk full")
    d.checkpoint(background=True)
    # A rebalance callback must not raise into the client: it restores what is durable.
    assert d.on_assign([0]) == {f"{TOPIC}:0": half}
    assert d.positions == {f"{TOPIC}:0": half} and d.saving is None
    assert d.source.commits == [{f"{TOPIC}:0": half}]


def test_liveness_fails_after_the_timeout_with_neither_membership_nor_progress(tmp_path):
    """Deterministic: a fake clock; the rule, not a broker, is under test."""
    from fairwatch.app.config import load_config
    from fairwatch.app.daemon import Daemon

    cfg = load_config(
        env={
            "FAIRWATCH_STATE__URL": f"sqlite:///{tmp_path}/s.db",
            "FAIRWATCH_KAFKA__LIVENESS_TIMEOUT": "2m",
            "FAIRWATCH_AUDIT__DAILY_STATS": "false",
        }
    )
    now = [1000.0]
    d = Daemon(cfg)
    d.clock = lambda: now[0]
    d.last_loop = d.last_progress = now[0]
    try:
        assert d.health()[0]
        now[0] += 119
        d.last_loop = now[0]  # the loop turns, but nothing joins and nothing arrives
        assert d.health()[0]
        now[0] += 2
        d.last_loop = now[0]
        alive, ready, detail = d.health()
        assert not alive and not ready and "no group membership" in detail
        d.on_assign([0])  # membership: alive again, for another full timeout
        assert d.health()[0]
        now[0] += 119
        d.last_loop = now[0]
        assert d.health()[0]
        now[0] += 2
        d.last_loop = now[0]
        assert not d.health()[0]
    finally:
        d.store.close()
        d.writer.shutdown()


def _evaluator_daemon(tmp_path, audit: str = "audit.jsonl"):
    """A lone daemon (SQLite: always the evaluator) with the alert loop, audit log in ``tmp_path``."""
    from fairwatch.alerts.loop import AlertLoop

    d = _daemon(tmp_path)
    alerts = d.config.alerts.model_copy(update={"audit_path": str(tmp_path / audit)})
    d.alerts = AlertLoop(alerts, interval=d.config.evaluation_interval)
    d.on_assign([0])
    return d


def _feed(d, until, seed: int = 11, hours: float = 4.0) -> bool:
    """A demographic-parity drop through partition 0, evaluated every 30 s, until ``until(d)``."""
    sim = LoanSimulator(seed=seed, start=START, rate=5.0, scenario="dp-drop", drift_at=1800.0)
    offset = 0
    for _ in range(int(hours * 3600 / 30)):
        events = [e.value for e in sim.advance(30.0) if e.topic == TOPIC]
        meta = [(0, offset + i) for i in range(len(events))]
        d._apply({0: _batch(0, events, meta, {f"{TOPIC}:0": offset + len(events)})})
        offset += len(events)
        d._publish()
        if until(d):
            return True
    return False


def _until_an_incident(d) -> None:
    assert _feed(d, lambda d: d.alerts.responder.incidents.open), "the dp-drop raised no incident in 4 hours"


def test_what_the_evaluator_acted_on_is_saved_at_once_without_a_checkpoint(tmp_path):
    """No checkpoint runs (as when the broker is unreachable or a write is in flight): the memory is durable anyway.

    The two-replica takeover test once saw the survivor reopen and act on the dead evaluator's
    incidents on a loaded CI machine: the memory was only saved with the next checkpoint.
    """
    from fairwatch.alerts import durable
    from fairwatch.alerts.loop import AlertLoop

    d = _evaluator_daemon(tmp_path)
    try:
        _until_an_incident(d)
        live = d.alerts.responder.incidents
        assert d.store.keys() == [d._alerts_key()]  # the alert row alone: no partition checkpoint was written
        assert d.store.last_saved is None  # and it does not pass for one in fairwatch_last_checkpoint_timestamp_seconds
        # The successor (killed right here, nothing else saved) resumes the same incidents and sequence.
        successor = AlertLoop(d.alerts.config, interval=d.config.evaluation_interval, audit=d.alerts.audit)
        assert durable.restore(successor, d.store.load([d._alerts_key()])[d._alerts_key()].state)
        book = successor.responder.incidents
        assert book._seq == live._seq >= 1
        assert sorted(i.id for i in book.open.values()) == sorted(i.id for i in live.open.values())
    finally:
        d.alerts.close()
        d.store.close()


def test_an_unsaved_alert_memory_is_a_warning_and_the_next_checkpoint_carries_it(tmp_path, caplog):
    d = _evaluator_daemon(tmp_path)
    real = d.store.save

    def refuse(cps, *, stamp=True):
        if not stamp:
            raise OSError("database is locked")
        real(cps, stamp=stamp)

    d.store.save = refuse
    try:
        _until_an_incident(d)
        warned = [r for r in caplog.records if r.getMessage().startswith("alert state not saved")]
        assert warned and all("database is locked" in r.error for r in warned)
        assert d.wake["checkpoint"].is_set() and d.store.keys() == []
        d.checkpoint()
        blob = d.store.load([d._alerts_key()])[d._alerts_key()].state
        assert blob == d.alerts_blob
    finally:
        d.alerts.close()
        d.store.close()


def test_an_evaluator_that_cannot_read_the_alert_memory_neither_acts_nor_overwrites_it(tmp_path, caplog):
    """It would act from a memory older than what the last evaluator did; it waits until the read works."""
    import json

    first = _evaluator_daemon(tmp_path, "first.jsonl")
    _until_an_incident(first)
    stored = first.store.load([first._alerts_key()])[first._alerts_key()].state
    first.alerts.close()
    first.store.close()

    second = _evaluator_daemon(tmp_path, "second.jsonl")
    real = second.store.load
    broken = [True]

    def load(keys):
        if broken[0] and second._alerts_key() in keys:
            raise OSError("the database is away")
        return real(keys)

    second.store.load = load
    try:
        _feed(second, lambda d: False, hours=3.0)  # the same drop, evidence enough to act on
        audit = tmp_path / "second.jsonl"
        kinds = [json.loads(line)["kind"] for line in audit.read_text().splitlines()] if audit.exists() else []
        assert not [k for k in kinds if k.startswith(("action.", "rollback.", "tier."))], kinds
        warned = [r for r in caplog.records if r.getMessage().startswith("alert state unreadable")]
        assert len(warned) == 1  # once, not at every evaluation
        second.checkpoint()  # its partitions are saved, the memory it did not read is not
        assert real([second._alerts_key()])[second._alerts_key()].state == stored
        broken[0] = False
        assert second._resume_alerts() and second.alerts_resumed  # the next evaluation's read
        book, before = second.alerts.responder.incidents, first.alerts.responder.incidents
        assert book._seq == before._seq and set(book.open) == set(before.open)
    finally:
        second.alerts.close()
        second.store.close()


def test_a_checkpoint_of_other_window_settings_stops_the_daemon_and_stays_as_it_was(tmp_path, monkeypatch):
    """Windows changed in the configuration, the state store kept: the partition's checkpoint
    cannot be continued. Its assignment stops the daemon with a configuration error naming the
    checkpoint, the windows and the two ways out; nothing is consumed for it, and the stored
    checkpoint is not overwritten. A damaged checkpoint stops it too (a CheckpointError)."""
    from fairwatch.app.config import ConfigError, load_config
    from fairwatch.app.daemon import CheckpointError, Daemon

    d, slow = _assigned_daemon(tmp_path)
    slow.release.set()
    d.on_assign([0])
    events = _events(120.0)
    _apply(d, events, 0, len(events))
    d.checkpoint()
    stored = d.store.load([d._key(0)])[d._key(0)]
    env = {"FAIRWATCH_STATE__URL": f"sqlite:///{tmp_path}/state.db", "FAIRWATCH_WINDOWS": "[1h, 24h, 30d]"}
    changed = Daemon(load_config(env=env))
    with pytest.raises(ConfigError, match=r"state\.url: checkpoint 'fairwatch/0': .* has windows .*'30d'.*fresh state"):
        changed.on_assign([0])
    assert changed.fatal is not None and changed.ledgers == {} and changed.positions == {}
    changed.checkpoint()  # (a shutdown checkpoint) writes nothing of the partition it could not restore
    again = changed.store.load([d._key(0)])[d._key(0)]
    assert (again.state, again.offsets) == (stored.state, stored.offsets)
    d.store.save({d._key(0): Checkpoint(stored.state[: len(stored.state) // 2], stored.offsets)})
    with pytest.raises(CheckpointError, match=r"checkpoint 'fairwatch/0' in the state store cannot be read"):
        Daemon(load_config(env={"FAIRWATCH_STATE__URL": env["FAIRWATCH_STATE__URL"]})).on_assign([0])
