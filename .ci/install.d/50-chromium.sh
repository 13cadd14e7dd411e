#!/usr/bin/env bash
# Chromium for tests/test_export.py: the monthly audit report is opened in headless
# Chromium and every image must load. Under CI=true a missing Chromium fails that test.
# Idempotent: nothing to do when a chromium binary is already on PATH.
set -euo pipefail

log() { printf '[50-chromium] %s\n' "$*"; }

if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    log "$(chromium --version 2>/dev/null || chromium-browser --version) already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    log "no apt-get: install Chromium (Debian package 'chromium') yourself" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then s=(); else s=(sudo); fi
log "apt-get install chromium"
"${s[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${s[@]}" apt-get install -y -q --no-install-recommends chromium
chromium --version
