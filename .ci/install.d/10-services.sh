#!/usr/bin/env bash
# Services the integration tests need, installed but not running (tests start their own):
#   - PostgreSQL server binaries (Debian's postgresql): tests/infra/postgres.py runs initdb
#     and postgres itself in a temp dir on a free loopback port;
#   - promtool and amtool (Debian's prometheus, prometheus-alertmanager) for the rule tests;
#   - Java + Maven, and the Apache Kafka 4.x jars from Maven Central, cached by
#     tests/infra/kafka_broker.py (default ~/.cache/fairwatch/kafka-<version>/libs);
#   - a C compiler and Python's headers, for the install's one C extension.
# Idempotent; when everything is there it does no apt or network work and takes ~1 s.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[10-services] %s\n' "$*"; }

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Debian packages --------------------------------------------------------------------
missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v promtool >/dev/null || missing+=(prometheus)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
# a C compiler and Python's headers: the install builds the fast path (streaming/_fastpath.c),
# which CI must test and measure (tests/test_fastpath.py fails under CI without it)
command -v cc >/dev/null || missing+=(gcc)
"$python" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || missing+=(python3-dev)

services=(postgresql prometheus prometheus-alertmanager)

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    # Keep apt from starting the services it installs (they would hold 5432/9090/9093):
    # a policy-rc.d that says 101 ("action forbidden"), unless one is already in place.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | sudo_ tee "$policy" >/dev/null
        sudo_ chmod 755 "$policy"
        own_policy=1
    fi
    cleanup_policy() { if [ "$own_policy" -eq 1 ]; then sudo_ rm -f "$policy"; fi; }
    trap cleanup_policy EXIT
    sudo_ apt-get update -q
    sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}"
    cleanup_policy
    own_policy=0
    trap - EXIT
else
    log "Debian packages already installed"
fi

# --- make sure no packaged service runs or starts at boot ---------------------------------
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    for svc in "${services[@]}"; do
        if systemctl list-unit-files "$svc.service" >/dev/null 2>&1; then
            sudo_ systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
        fi
    done
else
    for svc in "${services[@]}"; do
        if [ -x "/etc/init.d/$svc" ]; then
            if sudo_ "/etc/init.d/$svc" status >/dev/null 2>&1; then
                log "stopping $svc"
                sudo_ "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
            fi
            sudo_ update-rc.d "$svc" disable >/dev/null 2>&1 || true
        fi
    done
fi
# Debian's postgresql creates a "main" cluster on 5432; stop it if anything started it.
if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters --no-header 2>/dev/null | while read -r ver name port status _; do
        if [ "$status" = online ]; then
            log "stopping PostgreSQL cluster $ver/$name (port $port)"
            sudo_ pg_ctlcluster "$ver" "$name" stop -m fast || true
        fi
    done
fi

# --- Apache Kafka jars (Maven Central), cached once ---------------------------------------
cd "$repo"
libs="$("$python" -m tests.infra fetch-kafka)"
log "Kafka jars in $libs"
