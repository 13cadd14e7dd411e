"""The command line end to end: replay ≡ live exporter, demo start-up, bad input and config."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from fairwatch.monitor.engine import Engine
from fairwatch.monitor.exporter import serve_metrics
from fairwatch.monitor.snapshot import SnapshotBoard
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay, write_jsonl
from prometheus_client.parser import text_string_to_metric_families

from fairwatch.app.cli import main
from fairwatch.app.config import Config
from fairwatch.app.families import FAMILIES

#: The families this issue's engine exports (alerts, rollbacks, pipeline runs, Kafka lag
#: and checkpoints belong to the alerting and Kafka parts).
OWNED = sorted(
    set(FAMILIES)
    - {
        "fairness_alert_tier",
        "fairness_alert_evidence",
        "fairness_alert_evidence_threshold",
        "fairness_rollbacks_total",
        "fairness_pipeline_runs_total",
        "fairwatch_consumer_lag",
        "fairwatch_dead_letters_total",
        "fairwatch_last_checkpoint_timestamp_seconds",
        "fairwatch_evaluator",  # the daemon's replicas (docs/replicas.md)
    }
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sim(scenario="dp-drop"):
    return LoanSimulator(
        seed=3,
        rate=2.0,
        scenario=scenario,
        drift_at=1800.0,
        delay=OutcomeDelay(kind="lognormal", median_s=600.0, sigma=0.7),
    )


def test_replay_snapshot_equals_live_exporter(tmp_path: Path):
    dec, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    write_jsonl(sim(), 4 * 3600.0, dec, out)
    # Live: the same stream, delivered in simulator order in small batches, scraped over HTTP.
    engine = Engine(Config().engine_settings())
    s = sim()
    for _ in range(4 * 60):
        b = s.advance_batch(60.0)
        engine.process(decisions=b.topic_values(False), outcomes=b.topic_values(True))
    board = SnapshotBoard()
    board.publish(engine.snapshot())
    server, _ = serve_metrics(board, host="127.0.0.1", port=0)
    try:
        live = scrape(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
    snap_path = tmp_path / "snap.json"
    assert (
        main(["replay", "--file", str(dec), "--outcomes", str(out), "--snapshot", str(snap_path), "--no-progress"]) == 0
    )
    batch = {(e["name"], tuple(sorted(e["labels"].items()))): e["value"] for e in orjson.loads(snap_path.read_bytes())}
    assert set(batch) == set(live)
    # Counts are exact; score sums are float sums whose last bits depend on how the
    # stream was cut into batches, so everything derived from them agrees to 1e-12.
    for key, value in batch.items():
        if float(value).is_integer() and "score_sum" not in key[0]:
            assert live[key] == value, key
        else:
            assert live[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    names = {k[0] for k in batch}
    assert names >= {
        "fairness_demographic_parity_ratio",
        "fairness_expected_calibration_error",
        "fairness_equalized_odds_gap",
    }


def test_replay_dead_letters_bad_lines_and_goes_on(tmp_path: Path, capsys):
    dec = tmp_path / "d.jsonl"
    write_jsonl(sim("none"), 1800.0, dec)
    lines = dec.read_bytes().splitlines()
    bad = [b"{not json", b'{"schema":"decision/v1"}', lines[0], b"\xff\xfe"]
    dec.write_bytes(b"\n".join(lines[:10] + bad + lines[10:]) + b"\n")
    snap = tmp_path / "s.json"
    assert main(["replay", "--file", str(dec), "--snapshot", str(snap), "--no-progress"]) == 0
    dl = tmp_path / "d.deadletter.jsonl"
    rows = [orjson.loads(x) for x in dl.read_bytes().splitlines()]
    assert [r["reason"] for r in rows] == ["malformed_json", "missing_field:decision_id", "malformed_json"]
    assert rows[0]["raw"] == "{not json" and rows[0]["offset"] == 11
    assert "raw_base64" in rows[2]
    data = orjson.loads(snap.read_bytes())
    total_ok = sum(e["value"] for e in data if e["name"] == "fairwatch_events_total" and e["labels"]["result"] == "ok")
    dup = sum(
        e["value"] for e in data if e["name"] == "fairwatch_events_total" and e["labels"]["result"] == "duplicate"
    )
    assert total_ok == len(lines) and dup == 1
    assert "3 rejected" in capsys.readouterr().err


def test_replay_outputs_that_cannot_be_written_stop_it_before_it_starts(tmp_path: Path, capsys):
    """A --snapshot or --dead-letter that cannot be written is found before the replay (which
    may take hours), one line naming the option; a missing folder is made; so is backtest's --out."""
    dec = tmp_path / "d.jsonl"
    write_jsonl(sim("none"), 600.0, dec)
    (tmp_path / "afile").write_text("")
    for option, target, why in (
        ("--snapshot", tmp_path / "afile" / "s.json", "is a file, not a folder"),
        ("--snapshot", tmp_path, "it is a directory"),
        ("--dead-letter", tmp_path / "afile" / "x" / "dl.jsonl", "is a file, not a folder"),
    ):
        assert main(["replay", "--file", str(dec), option, str(target), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fairwatch replay: {option}: cannot write {str(target)!r}: ") and why in err, err
        assert "replay finished" not in err and "Traceback" not in err
    snap = tmp_path / "new" / "deeper" / "s.json"
    assert main(["replay", "--file", str(dec), "--snapshot", str(snap), "--no-progress"]) == 0
    assert orjson.loads(snap.read_bytes())
    assert main(["backtest", "--file", str(dec), "--out", str(tmp_path / "afile" / "bt"), "--no-progress"]) == 2
    assert "fairwatch backtest: --out: cannot make the folder" in capsys.readouterr().err


def test_bad_cli_arguments_and_config(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["replay"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["demo", "--speed", "fast"])
    assert e.value.code == 2
    assert "--speed: must be a number, got 'fast'" in capsys.readouterr().err
    assert main(["replay", "--file", str(tmp_path / "nope.jsonl")]) == 2
    assert "--file: no such file" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("windows: [1h]\njoin:\n  ttl: forever\n")
    f = tmp_path / "x.jsonl"
    f.write_text("")
    assert main(["replay", "--config", str(cfg), "--file", str(f)]) == 3
    assert "join.ttl: invalid duration 'forever'" in capsys.readouterr().err
    cfg.write_text("windowz: [1h]\n")
    assert main(["replay", "--config", str(cfg), "--file", str(f)]) == 3
    assert "windowz: unknown key; did you mean 'windows'?" in capsys.readouterr().err
    # a client option put beside kafka.options instead of inside: named, its value (a password) never shown
    cfg.write_text("kafka:\n  sasl_plain_password: hunter2-s3cret\n  bootstrap_server: b:9092\n")
    assert main(["replay", "--config", str(cfg), "--file", str(f)]) == 3
    err = capsys.readouterr().err
    assert "kafka.sasl_plain_password: unknown key; known: bootstrap_servers," in err and "hunter2" not in err
    cfg.write_text("state:\n  url: [hunter2-s3cret]\n")
    assert main(["replay", "--config", str(cfg), "--file", str(f)]) == 3
    err = capsys.readouterr().err
    assert "state.url: Input should be a valid string" in err and "hunter2" not in err


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["replay", "--help"]])
def test_help_explains(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert len(capsys.readouterr().out) > 300


def test_env_override_of_every_level(monkeypatch):
    from fairwatch.app.config import load_config

    cfg = load_config(
        env={"FAIRWATCH_WINDOWS": "[1h, 6h]", "FAIRWATCH_METRICS__PORT": "9200", "FAIRWATCH_KAFKA_BOOTSTRAP": "x:1"}
    )
    assert cfg.windows == ["1h", "6h"] and cfg.metrics.port == 9200


def test_demo_starts_fast_and_exports_every_family():
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fairwatch.app.cli",
            "demo",
            "--no-live",
            "--port",
            str(port),
            "--speed",
            "900",
            "--interval",
            "1",
            "--duration",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        first = None
        seen: set[str] = set()
        while time.monotonic() - t0 < 90:
            try:
                samples = scrape(port)
            except OSError:
                time.sleep(0.2)
                continue
            if first is None and samples:
                first = time.monotonic() - t0
            seen = {name for name, _ in samples}
            seen = {n[: -len("_total")] + "_total" if n.endswith("_total") else n for n in seen}
            if set(OWNED) <= seen:
                break
            time.sleep(1)
        assert first is not None and first < 10, f"first scrape after {first} s"
        assert set(OWNED) <= seen, f"missing families: {sorted(set(OWNED) - seen)}"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert b"demo stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_env_secrets_stay_text():
    from fairwatch.app.config import load_config

    cfg = load_config(
        env={
            "FAIRWATCH_KAFKA__OPTIONS__SASL_PLAIN_PASSWORD": "123",
            "FAIRWATCH_KAFKA__GROUP_ID": "yes",
            "FAIRWATCH_STATE__URL": "postgresql://u:{pw}@h/db",
            "FAIRWATCH_KAFKA__OPTIONS__REQUEST_TIMEOUT_MS": "5000",
        }
    )
    assert cfg.kafka.options == {"sasl_plain_password": "123", "request_timeout_ms": 5000}
    assert cfg.kafka.group_id == "yes" and cfg.state.url == "postgresql://u:{pw}@h/db"


def test_exporter_renders_once_per_published_snapshot():
    """Scrapes between two publishes reuse one rendering (and stay byte-identical);
    a new snapshot, or another format (gzip), is rendered afresh."""
    import gzip
    import urllib.request
    from unittest import mock

    from fairwatch.monitor.exporter import FairnessCollector
    from fairwatch.monitor.snapshot import Sample, Snapshot

    def snap(v: float) -> Snapshot:
        return Snapshot(
            0.0, (Sample("fairness_demographic_parity_ratio", {"model": "m", "window": "1h", "attribute": "race"}, v),)
        )

    board = SnapshotBoard()
    board.publish(snap(0.5))
    server, _ = serve_metrics(board, host="127.0.0.1", port=0)
    url = f"http://127.0.0.1:{server.server_port}/metrics"

    def get(**headers) -> bytes:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.read()

    try:
        with mock.patch.object(FairnessCollector, "collect", autospec=True, side_effect=FairnessCollector.collect) as c:
            first, second = get(), get()
            assert first == second and c.call_count == 1
            assert b"fairness_demographic_parity_ratio" in first and b" 0.5" in first
            assert gzip.decompress(get(**{"Accept-Encoding": "gzip"})) == first and c.call_count == 2
            board.publish(snap(0.7))
            assert b" 0.7" in get() and c.call_count == 3
    finally:
        server.shutdown()
        server.server_close()


def test_run_writes_every_threads_stack_on_sigusr1_and_goes_on(tmp_path):
    """For a daemon that seems stuck: ``kill -USR1`` shows where each thread is, and nothing stops.
    No broker is needed: the daemon serves /healthz while it retries the connection."""
    port = free_port()
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fairwatch.app.cli",
                "run",
                "--bootstrap-servers",
                f"127.0.0.1:{free_port()}",
                "--state",
                f"sqlite:///{tmp_path}/state.db",
                "--port",
                str(port),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "FAIRWATCH_ALERTS__ENABLED": "false"},
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                        break
                except OSError:
                    time.sleep(0.2)
            else:
                pytest.fail(f"no /healthz within 60 s:\n{log.read_text(errors='replace')[-3000:]}")
            # Right after /healthz the main thread may still be importing (a stack deeper than
            # the 100 frames faulthandler prints, cut before daemon.py): signal again until a
            # dump shows the daemon's own frames, as an engineer would.
            deadline = time.monotonic() + 30
            dumps = 0
            while time.monotonic() < deadline:
                proc.send_signal(signal.SIGUSR1)
                dumps += 1
                until = time.monotonic() + 10
                while log.read_text(errors="replace").count("Current thread") < dumps and time.monotonic() < until:
                    time.sleep(0.1)
                text = log.read_text(errors="replace")
                last = text[text.rfind("Current thread") :]
                if "daemon.py" in last:
                    break
                time.sleep(0.5)
            assert "Current thread" in text and text.count("Thread 0x") >= 2, text[-3000:]
            assert 'File "' in last and "daemon.py" in last, last[-3000:]
            time.sleep(0.5)
            assert proc.poll() is None, "SIGUSR1 stopped the daemon"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_flags_and_baseline_load_through_the_root_loader(tmp_path):
    """``FAIRWATCH_ALERTS__…`` overrides apply to ``fairwatch baseline``; a bad one is a ConfigError (exit 3)."""
    baselines = tmp_path / "b.json"
    baselines.write_text('{"m": {"values": {"demographic_parity_ratio": {"race": 0.9}}, "source": "test"}}')
    env = {**os.environ, "FAIRWATCH_ALERTS__BASELINE_PATH": str(baselines)}
    env.pop("FAIRWATCH_CONFIG", None)
    cmd = [sys.executable, "-m", "fairwatch.app.cli", "baseline", "show", "--json"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["m"]["values"] == {"demographic_parity_ratio": {"race": 0.9}}
    env["FAIRWATCH_ALERTS__ENABLD"] = "true"
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 3 and "FAIRWATCH_ALERTS__ENABLD: unknown key 'alerts.enabld'" in res.stderr


def test_demo_duration_takes_the_duration_syntax():
    from fairwatch.app.cli import build_parser

    args = build_parser().parse_args(["demo", "--duration", "10s"])
    assert args.duration == 10.0
    assert build_parser().parse_args(["demo", "--duration", "2m"]).duration == 120.0


def test_a_taken_metrics_port_is_a_configuration_error(capsys):
    """The metrics port held by another process (a daemon still running): one line naming
    metrics.port, the address and the reason, exit code 3 — not a traceback."""
    from fairwatch.monitor.exporter import ListenError

    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ListenError, match=rf"cannot listen on 0\.0\.0\.0:{port}: Address already in use"):
            serve_metrics(SnapshotBoard(), port=port)
        assert main(["demo", "--port", str(port), "--duration", "2s", "--no-live"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"fairwatch: configuration error: metrics.port: cannot listen on 0.0.0.0:{port}: Address already in use"
        " (another process holds the port: a fairwatch still running?); choose another with --port or metrics.port"
    )
    assert not any("Traceback" in line for line in err)


def test_simulate_without_a_reachable_broker_is_one_line():
    """No broker at the address: a ProduceError naming it and Kafka's reason, which the CLI
    prints as one line with exit code 1 (a runtime failure), not a traceback from inside
    kafka-python. In a child process: kafka-python leaves its IO thread's socket pair open
    when the producer's constructor fails (the CLI exits next)."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"""
import sys
from fairwatch.app import cli
from fairwatch.streaming import producer
real = producer.simulate
producer.simulate = lambda *a, **k: real(*a, **k, bootstrap_timeout=2.0)  # the CLI's call, a shorter wait
sys.exit(cli.main(["simulate", "--bootstrap-servers", "127.0.0.1:{port}", "--max-decisions", "5"]))
"""
    t = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - t < 30
    assert res.returncode == 1, res.stderr
    err = res.stderr.strip().splitlines()
    assert err[-1].startswith(f"fairwatch simulate: cannot write to Kafka at 127.0.0.1:{port}: KafkaTimeoutError")
    assert "Traceback" not in res.stderr
