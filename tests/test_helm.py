"""The Helm chart: lint, render, strict schema validation, and the invariants on-call relies on.

helm and kubeconform are built with ``go install`` by ``.ci/install.d/40-helm.sh`` into
``~/.cache/fairwatch/bin`` (``FAIRWATCH_TOOLS_BIN``); without them the tool tests skip,
except with CI=true, where they fail. kubeconform validates offline against the schemas
vendored in ``helm/fairwatch/ci/schemas/`` (Kubernetes kinds and the prometheus-operator
CRDs ServiceMonitor and PrometheusRule; see ``generate.py`` there).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fairwatch.app.config import load_config
from tests.infra.fixtures import service_unavailable

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "fairwatch"
SCHEMAS = CHART / "ci" / "schemas"
PROM = ROOT / "alerts" / "prometheus"
DASHBOARDS = ROOT / "grafana" / "dashboards"
TOOLS_BIN = Path(os.environ.get("FAIRWATCH_TOOLS_BIN", Path.home() / ".cache" / "fairwatch" / "bin"))
KUBE_VERSION = "1.33.0"  # the version of the vendored Kubernetes schemas
#: values file (None = the chart's defaults) and the release it is rendered as
VALUES = {"default": None, "production": CHART / "ci" / "production-values.yaml"}
RUNBOOK_DEFAULT = "https://github.com/fairwatch/fairwatch/blob/main/docs/runbook.md"
#: the Kafka client's request timeout bounds the drain after SIGTERM (fairwatch/app/daemon.py)
KAFKA_DRAIN_BOUND = 30.0


def _tool(name: str) -> str:
    for candidate in (TOOLS_BIN / name, shutil.which(name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    service_unavailable(name, f"not in {TOOLS_BIN} or on PATH; build it with: bash .ci/install.d/40-helm.sh")


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


@functools.cache
def _render_text(values: str) -> str:
    cmd = [_tool("helm"), "template", "fairwatch", str(CHART), "--namespace", "ml", "--kube-version", KUBE_VERSION]
    if VALUES[values] is not None:
        cmd += ["-f", str(VALUES[values])]
    res = _run(*cmd)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _render(values: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(_render_text(values)) if d]


def _one(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def _kubeconform(manifests: str) -> dict:
    res = _run(
        _tool("kubeconform"),
        "-strict",
        "-summary",
        "-output",
        "json",
        "-schema-location",
        str(SCHEMAS) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
        "-",
        stdin=manifests,
    )
    try:
        report = json.loads(res.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"kubeconform: {res.stdout}{res.stderr}")
    report["returncode"] = res.returncode
    return report


# --- one source of truth ----------------------------------------------------------------------
def test_chart_copies_equal_their_sources() -> None:
    """files/ are byte-for-byte alerts/prometheus/*.yml and grafana/dashboards/*.json."""
    stale = []
    for name in ("recording_rules.yml", "alerting_rules.yml"):
        if (CHART / "files" / "prometheus" / name).read_bytes() != (PROM / name).read_bytes():
            stale.append(name)
    ours = {p.name: p.read_bytes() for p in (CHART / "files" / "dashboards").glob("*.json")}
    theirs = {p.name: p.read_bytes() for p in DASHBOARDS.glob("*.json")}
    if ours != theirs:
        stale.append("dashboards")
    assert not stale, f"{stale} differ from their source: run python helm/fairwatch/ci/sync_files.py"


def test_vendored_schemas_cover_every_rendered_kind() -> None:
    names = {p.name for p in SCHEMAS.glob("*.json")}
    assert {
        "servicemonitor-monitoring-v1.json",
        "prometheusrule-monitoring-v1.json",
        "deployment-apps-v1.json",
    } <= names
    for p in SCHEMAS.glob("*.json"):
        schema = json.loads(p.read_text(encoding="utf-8"))
        assert schema.get("additionalProperties") is False, f"{p.name} is not strict"


# --- helm and kubeconform -----------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("values", list(VALUES))
def test_helm_lint(values: str) -> None:
    cmd = [_tool("helm"), "lint", str(CHART), "--strict", "--namespace", "ml", "--kube-version", KUBE_VERSION]
    if VALUES[values] is not None:
        cmd += ["-f", str(VALUES[values])]
    res = _run(*cmd)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 chart(s) failed" in res.stdout


@pytest.mark.integration
@pytest.mark.parametrize("values", list(VALUES))
def test_rendered_chart_passes_kubeconform_strict(values: str) -> None:
    report = _kubeconform(_render_text(values))
    s = report["summary"]
    ok = report["returncode"] == 0 and s["invalid"] == 0 and s["errors"] == 0
    assert ok, json.dumps(report["resources"], indent=1)
    assert s["skipped"] == 0, "a resource had no schema"
    assert s["valid"] == len(_render(values)) >= 10


@pytest.mark.integration
@pytest.mark.parametrize(
    ("kind", "path", "typo"),
    [
        ("Deployment", ("spec", "template", "spec", "containers", 0), "securityContxt"),
        ("ServiceMonitor", ("spec", "endpoints", 0), "intervall"),
        ("PrometheusRule", ("spec", "groups", 0), "rulez"),
    ],
)
def test_kubeconform_rejects_a_misspelt_field(kind: str, path: tuple, typo: str) -> None:
    """The vendored schemas are strict: a negative control for the test above."""
    docs = _render("default")
    doc = copy.deepcopy(_one(docs, kind))
    node = doc
    for key in path:
        node = node[key]
    node[typo] = {}
    report = _kubeconform(yaml.safe_dump(doc))
    assert report["summary"]["invalid"] == 1, report
    assert typo in json.dumps(report["resources"])


# --- invariants on the rendered manifests -------------------------------------------------------
@pytest.fixture(params=list(VALUES))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, _render(request.param)


@pytest.mark.integration
def test_pod_is_locked_down(rendered) -> None:
    _, docs = rendered
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    for m in c["volumeMounts"]:
        if not m.get("readOnly"):
            assert "emptyDir" in volumes[m["name"]], f"{m['mountPath']} is writable but not an emptyDir"
    mounts = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", "/var/lib/fairwatch"} <= mounts
    # relative paths in the config (baselines, flag file, pipeline runs) land on the state volume
    assert c["workingDir"] == "/var/lib/fairwatch"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets are referenced, never rendered"


@pytest.mark.integration
def test_probes_ports_and_grace_period_match_the_daemon(rendered, tmp_path: Path) -> None:
    values, docs = rendered
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and "fairwatch.yaml" in d["data"]]
    text = cm["data"]["fairwatch.yaml"]
    env = {"FAIRWATCH_STATE__URL": "postgresql://u:p@db/fairwatch"} if values == "production" else {}
    # the chart's config is valid for the daemon (fairwatch/app/config.py) as it will start
    cfg_path = tmp_path / "fairwatch.yaml"
    cfg_path.write_text(text, encoding="utf-8")
    cfg = load_config(cfg_path, env=env)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["run", "--config", "/etc/fairwatch/fairwatch.yaml"]
    (port,) = [p for p in c["ports"] if p["name"] == "metrics"]
    assert port["containerPort"] == cfg.metrics.port and cfg.metrics.host == "0.0.0.0"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= cfg.state.checkpoint_interval + KAFKA_DRAIN_BOUND, grace
    if values == "production":
        assert cfg.state.url.startswith("postgresql://")
    else:
        assert cfg.state.url == "sqlite:////var/lib/fairwatch/state.db"


@pytest.mark.integration
def test_secrets_by_reference() -> None:
    docs = _render("production")
    (c,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    refs = {name: e["valueFrom"]["secretKeyRef"]["name"] for name, e in env.items() if "valueFrom" in e}
    assert refs == {
        "FAIRWATCH_STATE__URL": "fairwatch-postgres",
        "FAIRWATCH_ADMIN_TOKEN": "fairwatch-admin",
        "FAIRWATCH_KAFKA__OPTIONS__SASL_PLAIN_USERNAME": "fairwatch-kafka-sasl",
        "FAIRWATCH_KAFKA__OPTIONS__SASL_PLAIN_PASSWORD": "fairwatch-kafka-sasl",
    }
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    tls = [v for v in pod["volumes"] if v["name"] == "kafka-tls"]
    assert tls == [{"name": "kafka-tls", "secret": {"secretName": "fairwatch-kafka-tls", "defaultMode": 0o440}}]
    cm = [d for d in docs if d["kind"] == "ConfigMap" and "fairwatch.yaml" in d["data"]][0]
    cfg = yaml.safe_load(cm["data"]["fairwatch.yaml"])
    assert cfg["kafka"]["options"]["ssl_cafile"] == "/etc/fairwatch/kafka-tls/ca.crt"
    assert "url" not in cfg["state"], "the database URL comes from the Secret only"
    assert _one(docs, "Deployment")["spec"]["replicas"] == 3


def test_more_than_one_replica_needs_the_shared_database() -> None:
    base = [_tool("helm"), "template", "fairwatch", str(CHART), "--namespace", "ml", "--kube-version", KUBE_VERSION]
    res = _run(*base, "--set", "replicaCount=2")
    assert res.returncode != 0 and "replicaCount > 1 needs secrets.database" in res.stderr
    ok = _run(*base, "--set", "replicaCount=2", "--set", "secrets.database.existingSecret=pg")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.integration
def test_prometheus_rule_equals_alerts_prometheus(rendered) -> None:
    _, docs = rendered
    rule = _one(docs, "PrometheusRule")
    expected = []
    for name in ("recording_rules.yml", "alerting_rules.yml"):
        expected += yaml.safe_load((PROM / name).read_text(encoding="utf-8"))["groups"]
    assert rule["spec"]["groups"] == expected


@pytest.mark.integration
def test_service_monitor_scrapes_the_service_as_job_fairwatch(rendered) -> None:
    _, docs = rendered
    sm, svc = _one(docs, "ServiceMonitor"), _one(docs, "Service")
    pod = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    sel = sm["spec"]["selector"]["matchLabels"]
    assert sel.items() <= svc["metadata"]["labels"].items()
    assert svc["spec"]["selector"].items() <= pod.items()
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "metrics" and ep["path"] == "/metrics"
    assert [p["name"] for p in svc["spec"]["ports"]] == ["metrics"]
    # alerts/prometheus/alerting_rules.yml watches up{job=~"fairwatch.*"}
    job = svc["metadata"]["labels"][sm["spec"]["jobLabel"]]
    assert re.fullmatch("fairwatch.*", job), job
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        doc = _one(docs, kind)
        labels = doc["spec"]["selector" if kind == "PodDisruptionBudget" else "podSelector"]["matchLabels"]
        assert labels.items() <= pod.items(), kind
    np = _one(docs, "NetworkPolicy")["spec"]
    assert [p["port"] for r in np["ingress"] for p in r["ports"]] == ["metrics"]


@pytest.mark.integration
def test_dashboards_are_configmaps_for_the_grafana_sidecar(rendered) -> None:
    values, docs = rendered
    maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    got = {name: json.loads(text) for m in maps for name, text in m["data"].items()}
    url = RUNBOOK_DEFAULT
    if VALUES[values] is not None:
        url = yaml.safe_load(VALUES[values].read_text(encoding="utf-8"))["dashboards"]["runbookUrl"]
    want = {
        p.name: json.loads(p.read_text(encoding="utf-8").replace(RUNBOOK_DEFAULT, url))
        for p in DASHBOARDS.glob("*.json")
    }
    assert got == want
    for m in maps:
        assert m["metadata"]["annotations"]["k8s-sidecar-target-directory"] == "fairwatch"


#: Dummy values for the Secrets the production chart references, by (secret, key).
DUMMY_SECRETS = {
    ("fairwatch-postgres", "url"): "postgresql://fairwatch:dummy-password@db/fairwatch",
    ("fairwatch-admin", "token"): "dummy-admin-token",
    ("fairwatch-kafka-sasl", "username"): "fairwatch",
    ("fairwatch-kafka-sasl", "password"): "123",  # a password that looks like a number stays text
}


@pytest.mark.integration
def test_the_whole_rendered_environment_loads_the_configuration(tmp_path: Path) -> None:
    """Every variable the Deployment sets (Secrets filled with dummies) together with its ConfigMap."""
    docs = _render("production")
    (c,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {}
    for e in c["env"]:
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = DUMMY_SECRETS[(ref["name"], ref["key"])]
        else:
            env[e["name"]] = e["value"]
    assert "FAIRWATCH_ADMIN_TOKEN" in env
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and "fairwatch.yaml" in d["data"]]
    cfg_path = tmp_path / "fairwatch.yaml"
    cfg_path.write_text(cm["data"]["fairwatch.yaml"], encoding="utf-8")
    cfg = load_config(cfg_path, env=env)
    assert cfg.state.url == DUMMY_SECRETS[("fairwatch-postgres", "url")]
    assert cfg.kafka.options["sasl_plain_password"] == "123"
    assert cfg.kafka.options["sasl_plain_username"] == "fairwatch"
    assert cfg.alerts.admin.token_env == "FAIRWATCH_ADMIN_TOKEN"
