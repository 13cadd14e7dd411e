"""The layers point one way: import-linter's contracts (pyproject ``[tool.importlinter]``,
docs/architecture.md) hold on the installed package, and they do catch an upward import.

import-linter walks the directories of ``fairwatch``; the editable install maps
``fairwatch.monitor`` & co. from the top-level folders, so the check runs on a real
install in a temporary directory (as ``.ci/lint-imports`` does in CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging import ROOT, copy_sources


def _lint(site: Path, cwd: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [str(lint), str(ROOT / "pyproject.toml")], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    src = copy_sources(tmp_path_factory.mktemp("src") / "fairwatch")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), "."],
        cwd=src,
        check=True,
        timeout=600,
    )
    return site


def test_import_contracts_are_kept(site: Path, tmp_path: Path) -> None:
    res = _lint(site, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 3 kept, 0 broken." in res.stdout


def test_an_upward_import_breaks_the_layers(site: Path, tmp_path: Path) -> None:
    bad = tmp_path / "site"
    shutil.copytree(site, bad)
    (bad / "fairwatch" / "monitor" / "upward.py").write_text("import fairwatch.alerts.config\n", encoding="utf-8")
    (bad / "fairwatch" / "streaming" / "cycle_a.py").write_text("from . import cycle_b\n", encoding="utf-8")
    (bad / "fairwatch" / "streaming" / "cycle_b.py").write_text("from . import cycle_a\n", encoding="utf-8")
    res = _lint(bad, tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Contracts: 1 kept, 2 broken." in res.stdout
    assert "fairwatch.monitor.upward -> fairwatch.alerts.config" in res.stdout
    assert "No cycles are allowed in fairwatch.streaming." in res.stdout
