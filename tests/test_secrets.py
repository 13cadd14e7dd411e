"""Secrets never leave the process: not in logs, endpoints or errors (real Kafka and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.test_kafka import DaemonProcess, Topics

pytestmark = pytest.mark.integration

DB_PASSWORD = "Db-Passw0rd-x9"  # the test server trusts every password: any one connects
ADMIN_TOKEN = "Admin-T0ken-y8"
SASL_PASSWORD = "Sasl-Passw0rd-z7"


def test_a_start_with_a_password_in_the_dsn_never_shows_it(kafka_bootstrap, postgres_dsn, tmp_path):
    user_host = postgres_dsn.split("://", 1)[1]
    user, host = user_host.split("@", 1)
    dsn = f"postgresql://{user}:{DB_PASSWORD}@{host}"
    topics = Topics(kafka_bootstrap)
    d = DaemonProcess(kafka_bootstrap, topics, dsn, tmp_path)
    d.env.update(
        {
            "FAIRWATCH_LOG__LEVEL": "DEBUG",
            "FAIRWATCH_ALERTS__ADMIN__ENABLED": "true",
            "FAIRWATCH_ADMIN_TOKEN": ADMIN_TOKEN,
            "FAIRWATCH_KAFKA__OPTIONS__SASL_PLAIN_PASSWORD": SASL_PASSWORD,  # unused on PLAINTEXT, still held
            "FAIRWATCH_ALERTS__AUDIT_PATH": str(tmp_path / "audit.jsonl"),
        }
    )
    d.start()
    seen = []
    try:
        deadline = time.monotonic() + 90
        while d.get("/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        for path in ("/metrics", "/healthz", "/readyz", "/jobs"):
            status, body = d.get(path)
            assert status in (200, 503), path
            seen.append((path, body))
    finally:
        assert d.stop() == 0
    log = d.log.read_text()
    assert "daemon started" in log and "postgresql://" in log and ":***@" in log
    seen.append(("log", log))
    for where, text in seen:
        for secret in (DB_PASSWORD, ADMIN_TOKEN, SASL_PASSWORD):
            assert secret not in text, f"{secret!r} in {where}"


def test_a_config_error_on_a_dsn_masks_its_password(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRWATCH_")}
    env["FAIRWATCH_STATE__URL"] = f"mysql://fw:{DB_PASSWORD}@db/fairwatch"
    res = subprocess.run(
        [sys.executable, "-m", "fairwatch.app.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 3, res.stderr
    assert "mysql://fw:***@db/fairwatch" in res.stderr and DB_PASSWORD not in res.stderr + res.stdout
