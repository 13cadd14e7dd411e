"""``fairwatch backtest``: the demo's live tier changes, reproduced from the events it saw."""

from __future__ import annotations

import json

import orjson
import pytest
import yaml
from fairwatch.monitor.engine import Engine
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay

from fairwatch.app.backtest import backtest, rfc3339
from fairwatch.app.cli import main
from fairwatch.app.config import Config, load_config
from fairwatch.app.demo import advance, demo_alerts

CONFIG = {"evaluation_interval": 30, "windows": ["1h", "24h"], "buckets_per_window": 12}


def _demo_run(tmp_path, config: Config, hours: float):
    """The demo's loop (simulator → engine → alerts → rollback → served version), events recorded."""
    sim = LoanSimulator(seed=2, rate=10.0, scenario="dp-drop", drift_at=1800.0, delay=OutcomeDelay(median_s=600.0))
    loop = demo_alerts(config, sim, tmp_path / "demo")
    engine = Engine(config.engine_settings())
    with open(tmp_path / "decisions.jsonl", "wb") as dec, open(tmp_path / "outcomes.jsonl", "wb") as out:

        def record(batch) -> None:
            for fh, lines in ((dec, batch.topic_values(False)), (out, batch.topic_values(True))):
                fh.writelines(line + b"\n" for line in lines)

        advance(sim, engine, loop, hours * 3600.0, on_batch=record)
    loop.close()
    return loop


def test_backtest_gives_the_demo_s_tier_changes_at_the_same_event_times(tmp_path):
    (tmp_path / "demo").mkdir()
    cfg_path = tmp_path / "fairwatch.yaml"
    cfg_path.write_text(yaml.safe_dump(CONFIG))
    config = load_config(cfg_path)
    live = _demo_run(tmp_path, config, hours=1.5)
    assert any(c.tier == 3 for c in live.changes), "the dp-drop should reach tier 3 in the live run"
    assert live.rollback.executed, "the live run rolled back (the recorded events include the rollback)"
    # a bad line is counted and dead-lettered, never stopping the run
    with open(tmp_path / "decisions.jsonl", "ab") as fh:
        fh.write(b"{not json\n")
    backtest(
        tmp_path / "decisions.jsonl",
        outcomes=tmp_path / "outcomes.jsonl",
        config=config,
        out=tmp_path / "bt",
        progress=False,
    )
    rows = [json.loads(x) for x in (tmp_path / "bt" / "incidents.jsonl").read_text().splitlines()]
    want = [(rfc3339(c.at), c.metric, c.attribute, c.group, c.previous, c.tier) for c in live.changes]
    got = [(r["at"], r["metric"], r["attribute"], r["group"], r["previous"], r["tier"]) for r in rows]
    assert got == want
    s = json.loads((tmp_path / "bt" / "summary.json").read_text())
    assert s["rejected"] == 1 and (tmp_path / "bt" / "deadletter.jsonl").exists()
    assert s["tier_raises"]["3"] == sum(1 for c in live.changes if c.tier == 3 and c.previous < 3)
    assert s["evaluations"] == 1.5 * 3600 / 30
    t3 = next(r for r in rows if r["tier"] == 3)
    assert "rollback" in t3["actions"] and "escalate" in t3["actions"]
    assert s["rollbacks"][0]["at"] == t3["at"] and s["rollbacks"][0]["from_version"] == "v3"
    assert s["first_raise_at"]["3"] == t3["at"]
    assert t3["evidence"]["statistic"] >= t3["evidence"]["threshold"]


def test_backtest_cli_prints_a_summary_and_learns_a_baseline(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    config = Config.model_validate(CONFIG)
    _demo_run(tmp_path, config, hours=1.0)
    cfg_path = tmp_path / "fairwatch.yaml"
    cfg_path.write_text(yaml.safe_dump(CONFIG))
    rc = main(
        [
            "backtest",
            "--file",
            str(tmp_path / "decisions.jsonl"),
            "--outcomes",
            str(tmp_path / "outcomes.jsonl"),
            "--config",
            str(cfg_path),
            "--learn-baseline",
            "20m",
            "--out",
            str(tmp_path / "bt"),
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "tier raises:" in text and "evaluations every 30 s" in text
    s = orjson.loads((tmp_path / "bt" / "summary.json").read_bytes())
    assert s["decisions"] > 30_000 and s["outcomes"] > 0
    # only degradation against a baseline has tier-1 rules: a tier-1 change means it was learned
    rows = [json.loads(x) for x in (tmp_path / "bt" / "incidents.jsonl").read_text().splitlines()]
    assert s["tier_raises"]["1"] >= 1 and any(r["tier"] == 1 for r in rows)
    assert s["baseline_unfinished"] == [] and "warning" not in text
    assert main(["backtest", "--file", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")]) == 2
    # a baseline asked for longer than the history: no tier-1 raise, and it is said why
    argv = ["backtest", "--file", str(tmp_path / "decisions.jsonl"), "--config", str(cfg_path),
            "--learn-baseline", "30d", "--out", str(tmp_path / "bt30"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    s = orjson.loads((tmp_path / "bt30" / "summary.json").read_bytes())
    assert s["tier_raises"]["1"] == 0 and [u["model"] for u in s["baseline_unfinished"]] == ["loan-approval"]
    assert "warning: the baseline of 'loan-approval' was still being learned when its events ended" in text


def test_a_model_that_appears_later_is_judged_and_rolled_back_as_if_alone(tmp_path):
    """Models join the backtest with their first valid decision: here the dp-drop model comes
    after another model's fair stream and after unreadable lines, in small batches. Its tier
    changes are the live run's, its rollback is simulated, and the models are listed in order
    of their first decision."""
    (tmp_path / "demo").mkdir()
    config = Config.model_validate(CONFIG)
    live = _demo_run(tmp_path, config, hours=1.5)
    early = LoanSimulator(seed=5, rate=5.0, start=LoanSimulator().start - 1800.0, model="early-model")
    lines = [b"{not json", b'{"schema": "decision/v1"}']
    for _ in range(2 * 3600 // 300):
        lines += early.advance_batch(300.0).topic_values(False)
    demo = (tmp_path / "decisions.jsonl").read_bytes().splitlines()
    merged = lines[:2] + sorted(lines[2:] + demo, key=lambda x: orjson.loads(x)["ts"])
    (tmp_path / "merged.jsonl").write_bytes(b"\n".join(merged) + b"\n")
    result = backtest(
        tmp_path / "merged.jsonl",
        outcomes=tmp_path / "outcomes.jsonl",
        config=config,
        out=tmp_path / "bt",
        batch_size=500,
        progress=False,
    )
    rows = [json.loads(x) for x in (tmp_path / "bt" / "incidents.jsonl").read_text().splitlines()]
    want = [(rfc3339(c.at), c.metric, c.attribute, c.group, c.previous, c.tier) for c in live.changes]
    got = [
        (r["at"], r["metric"], r["attribute"], r["group"], r["previous"], r["tier"])
        for r in rows
        if r["model"] == "loan-approval"
    ]
    assert got == want
    s = result.summary
    assert s["models"] == ["early-model", "loan-approval"]
    assert [r["model"] for r in s["rollbacks"]] == ["loan-approval"]
    assert s["rejected"] == 2 and s["decisions"] == len(merged)


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "decoder-process"])
def test_decisions_decoded_once_count_as_the_raw_lines_do(tmp_path, parallel):
    """The backtest's decision feed (each line decoded once, handed to the engine as columns,
    batch by batch, decoded here or by a decoder process) counts exactly what ``Engine.process``
    counts over the same lines, also when the attribute-set registries fill up and reset between
    batches, with rejected and repeated lines among them."""
    from functools import partial

    from fairwatch.monitor.decoder import DecoderProcess
    from fairwatch.monitor.engine import DECISIONS_TOPIC
    from fairwatch.monitor.replay import EventFeed
    from fairwatch.streaming.batch import decode_decision_batch

    sim = LoanSimulator(seed=3, rate=20.0)
    lines = []
    for k in range(30):
        for j, raw in enumerate(sim.advance_batch(10.0).topic_values(False)):
            ev = orjson.loads(raw)
            ev["attributes"]["region"] = f"r{(k * 7 + j) % 23}"  # many distinct attribute sets
            lines.append(orjson.dumps(ev))
        lines += [b'{"schema": "decision/v1", "ts": 1}', lines[-3]]  # rejected, and a repeat
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    settings = Config.model_validate({**CONFIG, "attributes": ["race", "sex", "region"]}).engine_settings()
    fed, raw = Engine(settings), Engine(settings)
    for e in (fed, raw):
        e.attribute_sets.limit = 5
    decoder = DecoderProcess(path, 97, fed.attribute_sets, DECISIONS_TOPIC) if parallel else None
    decode = partial(decode_decision_batch, registry=fed.attribute_sets)
    feed = EventFeed(path, 97, decode, DECISIONS_TOPIC, decoded=decoder)
    rejected = []
    t = sim.start
    while feed.next_time() is not None:
        t += 20.0
        for cols, rej in feed.parts(t):
            fed.apply_decisions(cols, rejections=rej)
            rejected += rej
    if decoder is not None:
        decoder.close()
    want = []
    for i in range(0, len(lines), 97):
        want += raw.process(decisions=lines[i : i + 97])
    assert fed.attribute_sets.generation > 3
    assert [(r.reason, r.raw) for r in rejected] == [(r.reason, r.raw) for r in want]

    def counters(e):
        return sorted((x.name, tuple(sorted(x.labels.items())), x.value) for x in e.snapshot(now=0.0).samples)

    assert counters(fed) == counters(raw)
    assert any(x[0] == "fairness_decisions_total" and ("attribute", "region") in x[1] for x in counters(fed))


def test_the_count_tables_of_a_snapshot_say_what_its_counter_samples_say():
    """The sequential policy reads each model's counters from the tables an engine snapshot
    carries (``Snapshot.counts``, also in a counters-only snapshot); they equal what the same
    snapshot's counter samples give when read the slow way (a snapshot without tables), for
    two models, labeled and unlabeled groups, and a group seen only later."""
    import dataclasses

    import numpy as np
    from fairwatch.alerts.sequential import counts_from_snapshot

    settings = Config.model_validate({**CONFIG, "attributes": ["race", "sex", "region"]}).engine_settings()
    engine = Engine(settings)
    sim = LoanSimulator(seed=4, rate=20.0, delay=OutcomeDelay(median_s=60.0))
    for k in range(12):
        batch = sim.advance_batch(30.0)
        lines = []
        for j, raw in enumerate(batch.topic_values(False)):
            ev = orjson.loads(raw)
            ev["model"] = "m-b" if j % 3 == 0 else ev["model"]
            if k >= 6:
                ev["attributes"]["region"] = f"r{j % 4}"  # groups that appear halfway
            lines.append(orjson.dumps(ev))
        outs = [
            orjson.dumps({**orjson.loads(o), "model": "m-b"}) if i % 3 == 0 else o
            for i, o in enumerate(batch.topic_values(True))
        ]
        engine.process(decisions=lines, outcomes=outs)
    for counters_only in (False, True):
        snap = engine.snapshot(now=0.0, counters_only=counters_only)
        tables = counts_from_snapshot(snap)
        full = engine.snapshot(now=0.0)
        slow = counts_from_snapshot(dataclasses.replace(full, counts=None))
        assert sorted(tables) == sorted(slow) == sorted(engine.models)
        for model, (names, arrays) in slow.items():
            got_names, got = tables[model]
            assert got_names == names
            assert any(a == "region" for a, _ in names)
            for a, b in zip(got, arrays, strict=True):
                assert a.shape == b.shape and np.array_equal(a, b)
        assert np.asarray(tables[sorted(tables)[0]][1][1]).sum() > 0  # outcomes were joined
