"""Per-partition statistics merge to what one engine over the whole stream holds; one evaluator leads."""

from __future__ import annotations

import time
import zlib

import orjson
import pytest
from fairwatch.monitor.engine import Engine
from fairwatch.monitor.partials import PartitionEngines, merge, merged_gauges, partial_blob, partial_of, read_partial
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay

from fairwatch.app.config import Config
from fairwatch.app.evaluator import Leadership, lock_key


def simulated_events(seed: int):
    """One hour of the loan simulator (3 decisions/s, dp-drop halfway) in delivery order."""
    sim = LoanSimulator(
        seed=seed,
        rate=3.0,
        scenario="dp-drop",
        drift_at=1800.0,
        start=1.8e9,
        delay=OutcomeDelay(kind="lognormal", median_s=900.0, sigma=0.6),
    )
    batch = sim.advance_batch(3600.0)
    return list(zip(batch.is_outcome.tolist(), batch.values, strict=True))


def feed(engine: Engine, events, batch: int = 500) -> None:
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        engine.process(decisions=[v for o, v in chunk if not o], outcomes=[v for o, v in chunk if o])


def _by_key(samples) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


@pytest.mark.parametrize("partitions", [1, 6, 24])
def test_merged_partitions_equal_one_engine_over_the_stream(partitions):
    events = simulated_events(seed=5)
    settings = Config().engine_settings()
    whole = Engine(settings)
    feed(whole, events)
    engines = PartitionEngines(settings)
    split: dict[int, list] = {}
    for o, v in events:  # keyed by decision id, as a producer would
        split.setdefault(zlib.crc32(orjson.loads(v)["decision_id"].encode()) % partitions, []).append((o, v))
    for p, evs in split.items():
        feed(engines[p], evs)
    assert len(engines) == partitions
    # Half of them through the published blob, half from memory: both give the same partial.
    parts = [read_partial(partial_blob(engines[p])) if p % 2 else partial_of(engines[p]) for p in engines]
    merged = merge(parts, settings)
    want = _by_key(merged_gauges(whole.snapshot().samples))
    got = _by_key(merged_gauges(merged.snapshot().samples))
    assert want and set(got) == set(want)
    for k, v in want.items():
        if float(v).is_integer():
            assert got[k] == v, k
        else:
            assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    # Each partition alone is a different, smaller view: the merge is not just any one of them.
    if partitions > 1:
        alone = _by_key(merged_gauges(engines[0].snapshot().samples))
        n = ("fairness_group_samples", (("attribute", "race"),))
        assert sum(v for k, v in alone.items() if k[0] == n[0]) < sum(v for k, v in want.items() if k[0] == n[0])
    assert merged.models["loan-approval"].versions == whole.models["loan-approval"].versions


def test_partials_of_different_windows_are_refused():
    events = simulated_events(seed=6)[:200]
    a = Engine(Config().engine_settings())
    feed(a, events)
    other = Config.model_validate({"windows": ["2h"]}).engine_settings()
    with pytest.raises(ValueError, match="windows"):
        merge([partial_of(a)], other)


@pytest.mark.integration
def test_one_advisory_lock_holder_per_group_and_takeover_when_it_closes(postgres_dsn):
    group = f"g-lock-{time.time_ns()}"
    a, b, c = Leadership(postgres_dsn, group), Leadership(postgres_dsn, group), Leadership(postgres_dsn, group + "x")
    try:
        assert a.check() and not b.check(), "exactly one holder"
        assert a.check() and not b.check(), "the holder keeps it"
        assert c.check(), "another group has its own lock"
        a.close()
        t0 = time.monotonic()
        while not b.check():
            assert time.monotonic() - t0 < 5.0
            time.sleep(0.05)
        assert not a.check()
    finally:
        for x in (a, b, c):
            x.close()
    assert lock_key(group) != lock_key(group + "x")


def test_sqlite_has_one_replica_and_it_always_evaluates(tmp_path):
    lead = Leadership(f"sqlite:///{tmp_path}/s.db", "g")
    assert lead.check() and not lead.shared
