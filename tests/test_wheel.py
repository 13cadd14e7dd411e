"""The built wheel: one top-level import package, ``fairwatch``, with every module and data
file of the source folders at its installed path, and importable with no dependencies at
all in a fresh virtualenv.

Built offline (``pip wheel --no-build-isolation`` with the setuptools the ``test`` extra
installs) from a copy of the sources, so a stale ``build/`` folder cannot leak files in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.packaging import ROOT, copy_sources

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DATA_SUFFIXES = (".yml", ".yaml", ".json", ".md", ".html", ".txt", ".j2", ".typed")


def build_wheel(folder: Path, **env: str) -> Path:
    """The wheel of a fresh copy of the sources, built in ``folder`` (``env`` added to the build's)."""
    src = copy_sources(folder / "src" / "fairwatch")
    out = folder / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True,
        timeout=600,
        env={**os.environ, **env},
    )
    (built,) = out.glob("fairwatch-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("build"))


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


def test_the_wheel_carries_the_c_fast_path(wheel: Path) -> None:
    assert [n for n in _names(wheel) if n.startswith("fairwatch/streaming/_fastpath.")], "no compiled fast path"


def test_without_a_c_compiler_the_wheel_builds_and_decodes_the_same(tmp_path: Path) -> None:
    """The README's promise: with no C compiler (``CC=false``: every compile fails) the
    install still succeeds, without the extension, and the decoders give the same results
    (msgspec alone). Checked by importing the wheel's own files over this environment's
    dependencies."""
    built = build_wheel(tmp_path, CC="false")
    assert not [n for n in _names(built) if "_fastpath" in n and not n.endswith(".c")]
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(built) as z:
        z.extractall(unpacked)
    probe = (
        "import sys\n"  # this environment's editable install would find the source tree's extension
        "sys.meta_path = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', '')]\n"
        "import fairwatch, orjson\n"
        "from fairwatch.streaming import batch, schema\n"
        f"assert fairwatch.__file__.startswith({str(unpacked)!r}), fairwatch.__file__\n"
        "assert not batch.NATIVE\n"
        "good = {'schema': 'decision/v1', 'decision_id': 'a', 'model': 'm', 'model_version': 'v',\n"
        "        'ts': '2026-11-21T10:15:00.123456+00:00', 'score': 0.5, 'decision': 1, 'attributes': {'sex': 'F'}}\n"
        "raws = [orjson.dumps({**good, 'decision_id': str(j)}) for j in range(2000)] + [b'{}']\n"
        "cols, bad = batch.decode_decision_batch(raws)\n"
        "assert len(cols) == 2000 and [(j, e.reason) for j, e in bad] == [(2000, 'missing_field:schema')]\n"
        "assert cols.ts[0] == schema.parse_timestamp(good['ts'])\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    res = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
