"""Regenerate the JSON schemas kubeconform validates the chart against (offline, strict).

Only PyPI and the Go module proxy are reachable from our machines and CI, so the schemas
are vendored here and rebuilt from packages fetched through those:

* Kubernetes kinds: the ``-local-strict`` schemas shipped in the PyPI package
  ``kubernetes-validate`` (generated from the Kubernetes OpenAPI spec; every object has
  ``additionalProperties: false``). Each kind is written standalone: only the definitions
  it reaches, under ``$defs``, refs rewritten to ``#/$defs/…``.
* ServiceMonitor and PrometheusRule: the CRDs in the prometheus-operator Go module
  (``example/prometheus-operator-crd/``), fetched with ``go mod download``; their
  ``openAPIV3Schema`` is converted the way kubeconform's ``openapi2jsonschema.py`` does
  (strict: objects with properties get ``additionalProperties: false`` unless
  ``x-kubernetes-preserve-unknown-fields``; ``x-kubernetes-int-or-string`` becomes
  string-or-integer).

File names follow kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` template,
so one ``-schema-location`` covers both. Run from the repository root::

    python helm/fairwatch/ci/schemas/generate.py
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
KUBERNETES_VERSION = "v1.33.0"
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

#: (schema file stem, Kubernetes definition) for every built-in kind the chart renders.
KINDS = {
    "configmap-v1": "io.k8s.api.core.v1.ConfigMap",
    "service-v1": "io.k8s.api.core.v1.Service",
    "serviceaccount-v1": "io.k8s.api.core.v1.ServiceAccount",
    "secret-v1": "io.k8s.api.core.v1.Secret",
    "deployment-apps-v1": "io.k8s.api.apps.v1.Deployment",
    "poddisruptionbudget-policy-v1": "io.k8s.api.policy.v1.PodDisruptionBudget",
    "networkpolicy-networking-v1": "io.k8s.api.networking.v1.NetworkPolicy",
}
CRDS = {
    "servicemonitor-monitoring-v1": "monitoring.coreos.com_servicemonitors.yaml",
    "prometheusrule-monitoring-v1": "monitoring.coreos.com_prometheusrules.yaml",
}
_REF = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/(.+)$")


def _kubernetes_definitions() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, KUBERNETES_VALIDATE],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as z:
            name = f"kubernetes_validate/kubernetes-json-schema/{KUBERNETES_VERSION}-local-strict/_definitions.json"
            return json.loads(z.read(name))["$defs"]


def _standalone(root: str, defs: dict) -> dict:
    """The definition ``root`` with every definition it reaches under ``$defs``."""
    seen: dict[str, dict] = {}

    def rewrite(node):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str) and (m := _REF.match(v)):
                    name = m.group(1)
                    out[k] = f"#/$defs/{name}"
                    if name not in seen:
                        seen[name] = {}
                        seen[name] = rewrite(defs[name])
                else:
                    out[k] = rewrite(v)
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    body = rewrite(copy.deepcopy(defs[root]))
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **body}
    schema["$defs"] = dict(sorted(seen.items()))
    return schema


def _strict(node):
    """openapi2jsonschema's conversion of a CRD's openAPIV3Schema, strict."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        for k in ("type", "anyOf"):
            out.pop(k, None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    preserve = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and not preserve:
        out.setdefault("additionalProperties", False)
    return out


def _crd_schemas() -> dict[str, dict]:
    env = dict(os.environ, GOFLAGS="-mod=mod")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["go", "mod", "init", "schemas"], cwd=tmp, check=True, capture_output=True, env=env)
        res = subprocess.run(
            ["go", "mod", "download", "-json", PROMETHEUS_OPERATOR],
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
    crd_dir = Path(json.loads(res.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    out = {}
    for stem, filename in CRDS.items():
        crd = yaml.safe_load((crd_dir / filename).read_text(encoding="utf-8"))
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        body = _strict(version["schema"]["openAPIV3Schema"])
        # kind/apiVersion are plain strings in the CRD; pin them as kubeconform's do.
        body["properties"]["apiVersion"] = {"type": "string", "enum": [f"{crd['spec']['group']}/v1"]}
        body["properties"]["kind"] = {"type": "string", "enum": [crd["spec"]["names"]["kind"]]}
        body["properties"]["metadata"] = {"type": "object"}
        out[stem] = {"$schema": "http://json-schema.org/draft-07/schema#", **body}
    return out


def main() -> int:
    defs = _kubernetes_definitions()
    schemas = {stem: _standalone(root, defs) for stem, root in KINDS.items()}
    schemas.update(_crd_schemas())
    for stem, schema in sorted(schemas.items()):
        path = HERE / f"{stem}.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n", encoding="utf-8")
        print(f"{path.relative_to(HERE)}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
