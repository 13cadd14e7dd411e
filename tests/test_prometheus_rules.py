"""Prometheus rules and Alertmanager routing, checked by the real promtool and amtool.

promtool/amtool come from Debian's `prometheus` and `prometheus-alertmanager`
packages. Without them the tests skip, except with CI=true, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fairwatch.alerts.prometheus import gen_recording_rules

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "alerts" / "prometheus"
AM = ROOT / "alerts" / "alertmanager"
RUNBOOK = ROOT / "docs" / "runbook.md"
IN_CI = os.environ.get("CI", "").lower() == "true"
INSTALL = "apt-get install -y prometheus prometheus-alertmanager (Debian packages)"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not found; install it with: {INSTALL}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _alert_rules() -> list[dict]:
    doc = yaml.safe_load((PROM / "alerting_rules.yml").read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def _recording_rules() -> list[dict]:
    doc = yaml.safe_load((PROM / "recording_rules.yml").read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def test_recording_rules_file_is_generated() -> None:
    committed = (PROM / "recording_rules.yml").read_text(encoding="utf-8")
    assert committed == gen_recording_rules.render(), (
        "recording_rules.yml is stale: run python -m fairwatch.alerts.prometheus.gen_recording_rules"
    )


def test_promtool_check_rules() -> None:
    promtool = _tool("promtool")
    for name in ("recording_rules.yml", "alerting_rules.yml"):
        res = _run(promtool, "check", "rules", str(PROM / name))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "SUCCESS" in res.stdout


def test_promtool_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    files = sorted(p.name for p in (PROM / "tests").glob("*.yml"))
    assert files, "no promtool unit tests found"
    res = _run(promtool, "test", "rules", *files, cwd=PROM / "tests")
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_rule_has_a_unit_test() -> None:
    tested_exprs: set[str] = set()
    tested_alerts: set[str] = set()
    for path in (PROM / "tests").glob("*.yml"):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for test in doc["tests"]:
            for case in test.get("promql_expr_test", []):
                tested_exprs.update(re.findall(r"[a-z_]+:[a-z_]+:[a-z0-9]+", case["expr"]))
            for case in test.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    tested_alerts.add(case["alertname"])
    records = {r["record"] for r in _recording_rules()}
    alerts = {r["alert"] for r in _alert_rules()}
    assert records - tested_exprs == set()
    assert alerts - tested_alerts == set()


def test_alert_labels_and_runbook_anchors() -> None:
    anchors = {h.lower() for h in re.findall(r"^## (\S+)", RUNBOOK.read_text("utf-8"), re.M)}
    for rule in _alert_rules():
        labels, notes = rule["labels"], rule["annotations"]
        assert labels["severity"] in {"tier1", "tier2", "tier3", "warning"}, rule["alert"]
        if labels["severity"] == "warning":
            assert labels["tier"] == "health"
        else:
            assert labels["severity"] == f"tier{labels['tier']}"
        assert {"summary", "description", "runbook_url"} <= set(notes)
        path, anchor = notes["runbook_url"].split("#")
        assert path == "docs/runbook.md" and anchor in anchors, rule["alert"]


def test_amtool_check_config() -> None:
    amtool = _tool("amtool")
    res = _run(amtool, "check-config", str(AM / "alertmanager.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


ROUTE_CASES = yaml.safe_load((AM / "tests" / "routes.yml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", ROUTE_CASES, ids=[c["name"] for c in ROUTE_CASES])
def test_amtool_routes(case: dict) -> None:
    amtool = _tool("amtool")
    labels = [f"{k}={v}" for k, v in case["labels"].items()]
    expected = ",".join(case["receivers"])
    res = _run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={AM / 'alertmanager.yml'}",
        f"--verify.receivers={expected}",
        *labels,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == expected


def test_amtool_route_verification_can_fail() -> None:
    """Guard against a vacuous check: a wrong expectation must make amtool exit non-zero."""
    amtool = _tool("amtool")
    res = _run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={AM / 'alertmanager.yml'}",
        "--verify.receivers=tier1-ml-engineer",
        "tier=3",
        "model=loan",
    )
    assert res.returncode != 0


def test_tier3_inhibits_lower_tiers_for_same_model_and_attribute() -> None:
    config = yaml.safe_load((AM / "alertmanager.yml").read_text(encoding="utf-8"))
    rules = config["inhibit_rules"]
    tier3 = next(r for r in rules if r["source_matchers"] == ['tier="3"'])
    assert tier3["target_matchers"] == ['tier=~"1|2"']
    assert sorted(tier3["equal"]) == ["attribute", "model"]
    # every tier the alert rules emit has a route
    routed = {m for r in config["route"]["routes"] for m in r["matchers"]}
    emitted = {f'tier="{r["labels"]["tier"]}"' for r in _alert_rules()}
    assert emitted <= routed
