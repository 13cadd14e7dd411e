"""The built wheel: one top-level import package, ``fairwatch``, with every module and data
file of the source folders at its installed path, and importable with no dependencies at
all in a fresh virtualenv.

Built offline (``pip wheel --no-build-isolation`` with the setuptools the ``test`` extra
installs) from a copy of the sources, so a stale ``build/`` folder cannot leak files in.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.packaging import ROOT, copy_sources

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DATA_SUFFIXES = (".yml", ".yaml", ".json", ".md", ".html", ".txt", ".j2", ".typed")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = copy_sources(tmp_path_factory.mktemp("src") / "fairwatch")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("fairwatch-*.whl")
    return built


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_the_only_top_level_package_is_fairwatch(wheel: Path) -> None:
    names = _names(wheel)
    version = PYPROJECT["project"]["version"]
    assert {n.split("/", 1)[0] for n in names} == {"fairwatch", f"fairwatch-{version}.dist-info"}
    with zipfile.ZipFile(wheel) as z:
        top = z.read(f"fairwatch-{version}.dist-info/top_level.txt").decode().split()
    assert top == ["fairwatch"]


def test_every_module_and_data_file_is_at_its_installed_path(wheel: Path) -> None:
    names = _names(wheel)
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    expected = set()
    for package, folder in mapping.items():
        for path in (ROOT / folder).rglob("*"):
            rel = path.relative_to(ROOT / folder)
            if not path.is_file() or "__pycache__" in rel.parts:
                continue
            if path.suffix == ".py" or path.suffix in DATA_SUFFIXES:
                expected.add(f"{package.replace('.', '/')}/{rel.as_posix()}")
    missing = sorted(expected - names)
    assert missing == []
    for data in (
        "fairwatch/py.typed",
        "fairwatch/alerts/prometheus/alerting_rules.yml",
        "fairwatch/alerts/prometheus/recording_rules.yml",
        "fairwatch/alerts/alertmanager/alertmanager.yml",
        "fairwatch/monitor/engine.py",
        "fairwatch/app/cli.py",
    ):
        assert data in names


def test_fresh_venv_imports_fairwatch_with_no_dependencies(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py, fw = venv / "bin" / "python", venv / "bin" / "fairwatch"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    res = subprocess.run(
        [str(py), "-c", "import fairwatch, sys; print(fairwatch.__version__, fairwatch.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    version, path = res.stdout.split()
    assert version == PYPROJECT["project"]["version"]
    assert Path(path).is_relative_to(venv)  # the installed copy, not the source tree
    # building the command line needs no dependency either: every heavy import is in a command
    res = subprocess.run([str(fw), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "usage: fairwatch" in res.stdout
