"""The public API of ``import fairwatch``: every name resolves, the import stays cheap,
every error class of ours derives from FairwatchError, and the README's embedding
example runs and prints what the README says."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import fairwatch
from fairwatch.errors import FairwatchError

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: exceptions that are control flow inside one module, caught there, never raised to a caller
INTERNAL_SIGNALS = {"fairwatch.streaming.kafka_records.LegacyFormat"}


def _packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def _modules() -> list[str]:
    names = []
    for pkg in _packages():
        names.append(pkg)
        for info in pkgutil.iter_modules(importlib.import_module(pkg).__path__):
            if not info.ispkg and info.name != "__main__":
                names.append(f"{pkg}.{info.name}")
    return names


def test_every_public_name_resolves() -> None:
    assert fairwatch.__all__ == list(dict.fromkeys(fairwatch.__all__)), "a name is listed twice"
    missing = [name for name in fairwatch.__all__ if getattr(fairwatch, name, None) is None]
    assert missing == []
    assert dir(fairwatch) == sorted(fairwatch.__all__)
    assert fairwatch.Engine.__module__ == "fairwatch.monitor.engine"
    assert "fairness_alert_tier" in fairwatch.FAMILIES and "fairness_selection_rate" in fairwatch.FAMILIES
    with pytest.raises(AttributeError, match="no attribute 'Engin'"):
        fairwatch.Engin  # noqa: B018


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    assert fairwatch.__version__ == version("fairwatch")


def test_import_fairwatch_loads_no_layer_and_no_library() -> None:
    prefixes = ("fairwatch.", "numpy", "pydantic", "importlib.metadata")
    code = f"import sys, fairwatch; print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert res.stdout.strip() == "['fairwatch.errors']"


def test_every_error_class_derives_from_fairwatch_error() -> None:
    modules = _modules()
    assert "fairwatch.monitor.engine" in modules and "fairwatch.alerts.flags.base" in modules
    errors, outside = set(), []
    for name in modules:
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if not issubclass(cls, BaseException) or cls.__module__ != name:
                continue
            qualified = f"{name}.{cls.__qualname__}"
            errors.add(qualified)
            if not issubclass(cls, FairwatchError) and qualified not in INTERNAL_SIGNALS:
                outside.append(qualified)
    assert outside == []
    assert {"fairwatch.streaming.schema.EventError", "fairwatch.app.config.ConfigError"} <= errors


def _readme_block(section: str, lang: str) -> str:
    text = README.read_text(encoding="utf-8").split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return text.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def test_readme_embedding_example_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    code = _readme_block("Embedding the engine", "python")
    assert "import fairwatch\n" in code and "from fairwatch" not in code
    used = set(re.findall(r"\bfairwatch\.(\w+)", code))
    assert used and used <= set(fairwatch.__all__), used
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True
    )
    assert res.stdout == _readme_block("Embedding the engine", "text")
