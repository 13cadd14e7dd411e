#!/usr/bin/env bash
# helm and kubeconform for tests/test_helm.py (and the Grafana SDK models for
# tests/test_grafana.py, at the end), helm and kubeconform built from source with `go install` through
# the Go module proxy into ~/.cache/fairwatch/bin (FAIRWATCH_TOOLS_BIN overrides).
#   - helm        helm.sh/helm/v3/cmd/helm                      (helm lint, helm template)
#   - kubeconform github.com/yannh/kubeconform/cmd/kubeconform  (strict schema validation)
# kubeconform runs offline: the Kubernetes and CRD (ServiceMonitor, PrometheusRule) JSON
# schemas it needs are vendored in helm/fairwatch/ci/schemas/ (see its README.md).
# Idempotent: when both binaries are there at the pinned versions it does no network work.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
bin="${FAIRWATCH_TOOLS_BIN:-$HOME/.cache/fairwatch/bin}"

log() { printf '[40-helm] %s\n' "$*"; }

if ! command -v go >/dev/null; then
    if command -v apt-get >/dev/null; then
        log "go not found; installing Debian's golang-go"
        if [ "$(id -u)" -eq 0 ]; then s=(); else s=(sudo); fi
        "${s[@]}" apt-get update -q && "${s[@]}" apt-get install -y -q --no-install-recommends golang-go
    else
        log "go not found and no apt-get: install Go >= 1.24" >&2
        exit 1
    fi
fi

mkdir -p "$bin"
stamp() { printf '%s' "$bin/.$1.version"; }
# a stamp records what was built; bumping a version (or the ldflags' revision) rebuilds
BUILD_REV=2

build() {  # name module version ldflags
    local name="$1" module="$2" version="$3" ldflags="$4"
    if [ -x "$bin/$name" ] && [ "$(cat "$(stamp "$name")" 2>/dev/null)" = "$version+$BUILD_REV" ]; then
        log "$name $version already in $bin"
        return
    fi
    log "go install $module@$version -> $bin"
    # -trimpath: reproducible; CGO off: a static binary that needs nothing from the host.
    GOBIN="$bin" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" nice -n 10 go install -ldflags "-s -w $ldflags" "$module@$version"
    printf "%s" "$version+$BUILD_REV" >"$(stamp "$name")"
}

# The ldflags helm's Makefile sets: its version, and the Kubernetes version it assumes when
# not talking to a cluster (`helm template`, `helm lint`), that of the client-go it uses.
HELM_K8S_MAJOR="${HELM_K8S_MAJOR:-1}"
HELM_K8S_MINOR="${HELM_K8S_MINOR:-36}"  # helm v3.21.x builds with k8s.io/client-go v0.36
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    helm_ldflags+=" -X $pkg.k8sVersionMajor=$HELM_K8S_MAJOR -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
done
build helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$helm_ldflags"
build kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" \
    "-X main.version=$KUBECONFORM_VERSION"

"$bin/helm" version --short
"$bin/kubeconform" -v

# grafana-foundation-sdk (PyPI): Grafana's schema as Python models; tests/test_grafana.py
# decodes and re-encodes every dashboard with them. Pinned to the Grafana 11.6 models.
python="${PYTHON:-python3}"
GRAFANA_SDK_VERSION="${GRAFANA_SDK_VERSION:-1769699379!11.6.0}"
have="$("$python" -c 'import importlib.metadata as m; print(m.version("grafana-foundation-sdk"))' 2>/dev/null || true)"
if [ "$have" = "$GRAFANA_SDK_VERSION" ]; then
    log "grafana-foundation-sdk $have already installed"
else
    log "pip install grafana-foundation-sdk==$GRAFANA_SDK_VERSION"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$python" -m pip install -q "grafana-foundation-sdk==$GRAFANA_SDK_VERSION"
fi
