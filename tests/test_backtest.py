"""``fairwatch backtest``: the demo's live tier changes, reproduced from the events it saw."""

from __future__ import annotations

import json

import orjson
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
    assert main(["backtest", "--file", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")]) == 2


def test_decision_times_read_vectorised_equal_the_per_line_times():
    """The backtest cuts its history by each line's event time: the vectorised read gives the
    per-line parser's value for every stamp form, and a batch with an unreadable line falls
    back line by line (that line sorts first; the engine rejects it with its reason)."""
    from datetime import UTC, datetime

    from fairwatch.app.backtest import _line_time, _line_times

    t = datetime(2026, 11, 3, 4, 5, 6, 789012, UTC)
    clean = [
        b'{"ts": "%s", "model": "m"}' % t.isoformat().encode(),
        b'{"ts": "%s"}' % t.isoformat().replace("+00:00", "Z").encode(),
        b'{"ts": "2026-11-03T04:05:06Z", "x": [1, {"y": 2}]}',
        b'{"ts": "2026-11-03T06:05:06.5+02:00"}',
        b'{"ts": 1793678706.25}',
        b'{"ts": 1793678706}',
    ]
    want = [_line_time(x) for x in clean]
    assert list(_line_times(clean)) == want and len(set(want)) > 1
    for bad in (b"not json", b'{"ts": null}', b'{"no_ts": 1}', b'{"ts": "yesterday"}', b'{"ts": true}', b"[1, 2]"):
        lines = [*clean, bad]
        got = list(_line_times(lines))
        assert got == [*want, _line_time(bad)], bad


def test_the_model_scan_reads_each_line_s_top_level_model(tmp_path):
    """Models are each line's top-level ``model`` (not a ``model`` key nested in features,
    escapes decoded), in order of first appearance; unreadable lines and lines without a
    string model are skipped, in a batch that holds them too."""
    from fairwatch.app.backtest import _models

    lines = [
        b'{"features": {"model": "nested"}, "model": "credit"}',
        b"{not json",
        b"[1, 2]",
        b'{"model": 7}',
        b'{"model": "a\\"b"}',
        b'{"model": "credit"}',
        b"",
        b'{"decision_id": "x"}',
        b'  {"model": "\\u00e9t\\u00e9"}  ',
    ]
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert _models(path) == ["credit", 'a"b', "été"]
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b'{"model": "m2", "x": {"model": "no"}}\n{"model": "m1"}\n')
    assert _models(clean) == ["m2", "m1"]
