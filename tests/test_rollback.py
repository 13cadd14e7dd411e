"""Rollback procedure, CLI, admin API and the demo loop end to end."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from fairwatch.alerts.audit import AuditLog
from fairwatch.alerts.cli import add_baseline_parser, add_flags_parser
from fairwatch.alerts.config import RollbackConfig
from fairwatch.alerts.flags import FlagdFileStore
from fairwatch.alerts.loop import AlertLoop
from fairwatch.alerts.rollback import RollbackManager

from fairwatch.app.commands import load_alerts
from fairwatch.app.config import load_config

STEPS = ["rollback.detect", "rollback.assess", "rollback.decide", "rollback.execute"]


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    p = tmp_path / "flags.json"
    p.write_text(
        json.dumps(
            {
                "flags": {
                    "loan-model": {"state": "ENABLED", "variants": {"v2": "v2", "v3": "v3"}, "defaultVariant": "v3"},
                    "other": {"keep": True},
                }
            }
        )
    )
    return p


def manager(flag_file: Path, tmp_path: Path, **over) -> tuple[RollbackManager, AuditLog]:
    cfg = RollbackConfig.model_validate(
        {
            "models": {"m": {"flag": "loan-model", "rollback_to": "v2"}},
            "cooldown": 600,
            "verify_grace": 10,
            "state_path": str(tmp_path / "state.json"),
            **over,
        }
    )
    audit = AuditLog(tmp_path / "audit.jsonl")
    return RollbackManager(cfg, FlagdFileStore(flag_file, fsync=False), audit=audit), audit


def kinds(audit: AuditLog) -> list[str]:
    return [e["kind"] for e in audit.entries()]


def test_rollback_steps_are_audited_and_idempotent_per_incident(flag_file, tmp_path):
    mgr, audit = manager(flag_file, tmp_path)
    rec = mgr.rollback("inc-1", "m", now=1000.0, reason="tier 3", evidence={"window": "5m"}, versions={"v3": 500})
    assert rec.status == "verifying" and rec.previous == "v3"
    assert json.loads(flag_file.read_text())["flags"]["loan-model"]["defaultVariant"] == "v2"
    assert json.loads(flag_file.read_text())["flags"]["other"] == {"keep": True}
    assert kinds(audit) == STEPS
    again = mgr.rollback("inc-1", "m", now=1001.0, reason="tier 3")
    assert again is rec and mgr.executed[("m", "loan-model")] == 1
    # verify: decisions now carry v2 and the tier is back to 0 on a post-rollback window
    assert mgr.verify({"m": Counter(v3=510)}, 1011.0, lambda r: 0) == []  # grace point
    done = mgr.verify({"m": Counter(v3=510, v2=400)}, 1400.0, lambda r: 0)
    assert [r.status for r in done] == ["verified"]
    assert done[0].verification["rollback_version_share"] == 1.0
    assert kinds(audit)[-2:] == ["rollback.verify", "rollback.communicate"]


def test_verification_reports_not_recovered_after_timeout(flag_file, tmp_path):
    mgr, audit = manager(flag_file, tmp_path, verify_timeout=100)
    mgr.rollback("inc-1", "m", now=0.0, reason="r", evidence={"window": "5m"})
    mgr.verify({"m": Counter(v3=10)}, 20.0, lambda r: 3)
    done = mgr.verify({"m": Counter(v3=10, v2=300)}, 400.0, lambda r: 3)
    assert done[0].status == "not-recovered" and done[0].verification["carries_rollback_version"]


def test_never_to_the_live_version_cooldown_and_dry_run(flag_file, tmp_path):
    mgr, audit = manager(flag_file, tmp_path)
    dry = mgr.rollback("inc-0", "m", now=0.0, reason="r", dry_run=True)
    assert (
        dry.status == "dry-run" and json.loads(flag_file.read_text())["flags"]["loan-model"]["defaultVariant"] == "v3"
    )
    assert mgr.rollback("inc-1", "m", now=10.0, reason="r").status == "verifying"
    live = mgr.rollback("inc-2", "m", now=20.0, reason="r")
    assert live.status == "skipped" and "already live" in live.reason
    FlagdFileStore(flag_file).set_variant("loan-model", "v3", reason="redeploy")
    cool = mgr.rollback("inc-3", "m", now=100.0, reason="r")
    assert cool.status == "skipped" and "cooldown" in cool.reason
    later = mgr.rollback("inc-4", "m", now=10.0 + 601, reason="r")
    assert later.status == "verifying"
    decides = [e for e in audit.entries() if e["kind"] == "rollback.decide"]
    assert [d["decision"] for d in decides] == ["dry-run", "execute", "skip", "skip", "execute"]


def test_unknown_model_is_a_clear_error(flag_file, tmp_path):
    mgr, _ = manager(flag_file, tmp_path)
    with pytest.raises(KeyError, match="no flag"):
        mgr.rollback("i", "nope", now=0.0, reason="r")


# -- CLI --------------------------------------------------------------------------------------
def cli(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="fairwatch")
    sub = p.add_subparsers(dest="command")
    add_flags_parser(sub, load=load_alerts)
    add_baseline_parser(sub, load=load_alerts)
    args = p.parse_args(argv)
    return args.func(args)


@pytest.fixture
def config(tmp_path, flag_file) -> Path:
    cfg = tmp_path / "fw.yaml"
    cfg.write_text(
        "alerts:\n"
        f"  audit_path: {tmp_path / 'audit.jsonl'}\n"
        f"  baseline_path: {tmp_path / 'baselines.json'}\n"
        "  rollback:\n"
        f"    flag_store: {{kind: flagd-file, path: {flag_file}}}\n"
        f"    state_path: {tmp_path / 'state.json'}\n"
        "    models: {m: {flag: loan-model, rollback_to: v2}}\n"
    )
    return cfg


def test_flags_cli_status_rollback_restore(config, flag_file, capsys):
    assert cli(["flags", "status", "--config", str(config)]) == 0
    assert "serves v3" in capsys.readouterr().out
    assert cli(["flags", "rollback", "--config", str(config), "--model", "m", "--reason", "INC-7"]) == 0
    assert json.loads(flag_file.read_text())["flags"]["loan-model"]["defaultVariant"] == "v2"
    assert cli(["flags", "rollback", "--config", str(config), "--model", "m", "--reason", "again"]) == 0
    assert "already live" in capsys.readouterr().out
    assert cli(["flags", "restore", "--config", str(config), "--model", "m", "--reason", "fixed"]) == 0
    assert json.loads(flag_file.read_text())["flags"]["loan-model"]["defaultVariant"] == "v3"
    assert cli(["flags", "rollback", "--config", str(config), "--model", "nope", "--reason", "x"]) == 2
    assert "no flag in alerts.rollback.models" in capsys.readouterr().err
    assert cli(["flags", "rollback", "--config", str(config), "--model", "m", "--reason", " "]) == 2


def test_baseline_cli_set_from_snapshot_and_show(config, tmp_path, capsys):
    report = tmp_path / "snap.json"
    report.write_text(
        json.dumps(
            [
                {
                    "name": "fairness_demographic_parity_ratio",
                    "labels": {"model": "m", "window": "24h", "attribute": "race"},
                    "value": 0.93,
                },
                {
                    "name": "fairness_accuracy",
                    "labels": {"model": "m", "window": "24h", "attribute": "race", "group": "A"},
                    "value": 0.8,
                },
                {
                    "name": "fairness_accuracy",
                    "labels": {"model": "m", "window": "24h", "attribute": "race", "group": "B"},
                    "value": 0.75,
                },
            ]
        )
    )
    assert cli(["baseline", "set", "--config", str(config), "--from-report", str(report)]) == 0
    assert cli(["baseline", "show", "--config", str(config), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert shown["m"]["values"] == {"demographic_parity_ratio": {"race": 0.93}, "accuracy": {"race": 0.75}}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli(["baseline", "set", "--config", str(config), "--from-report", str(bad)]) == 2
    assert "cannot read a baseline" in capsys.readouterr().err
    assert cli(["baseline", "set", "--config", str(config), "--from-report", str(tmp_path / "missing.json")]) == 2


# -- admin API ---------------------------------------------------------------------------------
def test_admin_api_requires_the_bearer_token(config, flag_file, tmp_path):
    from fairwatch.alerts.admin import serve_admin

    loop = AlertLoop(load_config(config).alerts)
    srv = serve_admin(loop, token="s3cret")
    base = f"http://127.0.0.1:{srv.server_port}"

    def call(path, token=None, body=None):
        req = urllib.request.Request(
            base + path,
            data=None if body is None else json.dumps(body).encode(),
            method="GET" if body is None else "POST",
        )
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.loads(e.read())

    try:
        assert call("/incidents")[0] == 401
        assert call("/incidents", "wrong")[0] == 403
        assert call("/incidents", "s3cret") == (200, {"incidents": []})
        assert call("/flags", "s3cret")[1]["flags"][0]["live"] == "v3"
        assert call("/flags/rollback", "wrong", {"model": "m", "reason": "x"})[0] == 403
        code, rec = call("/flags/rollback", "s3cret", {"model": "m", "reason": "INC-1"})
        assert code == 200 and rec["status"] == "verifying" and rec["target"] == "v2"
        assert call("/flags/rollback", "s3cret", {"model": "m"})[0] == 400
        assert call("/flags/restore", "s3cret", {"model": "m", "reason": "ok"})[1]["variant"] == "v3"
    finally:
        srv.shutdown()
        srv.server_close()
        loop.close()


# -- the demo loop -------------------------------------------------------------------------------
def test_demo_rolls_back_and_verifies_recovery(tmp_path):
    from fairwatch.app.config import Config
    from fairwatch.app.demo import run_demo

    cfg = Config.model_validate(
        {
            "metrics": {"host": "127.0.0.1", "port": 0},
            "simulator": {"speed": 1200, "rate": 10, "scenario": "dp-drop", "drift_at": "30m"},
        }
    )
    seen = []
    run_demo(
        cfg,
        duration=8,
        interval=0.5,
        live=False,
        state_dir=tmp_path,
        on_snapshot=lambda s: seen.append(
            (s.value("fairness_rollbacks_total"), max((x.value for x in s.select("fairness_alert_tier")), default=None))
        ),
    )
    flags = json.loads((tmp_path / "flags.json").read_text())
    assert flags["flags"]["loan-model"]["defaultVariant"] == "v2"  # the flag file flipped
    assert seen[0][0] == 0.0 and seen[-1][0] == 1.0
    assert seen[-1][1] is not None  # fairness_alert_tier is exported
    audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "tier.change" and e["tier"] == 3 for e in audit)
    verify = [e for e in audit if e["kind"] == "rollback.verify"]
    assert verify and verify[0]["ok"] and verify[0]["recovered"] and verify[0]["carries_rollback_version"]
