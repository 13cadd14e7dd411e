"""Every docstring example in the installed ``fairwatch`` package runs, through its installed name.

Doctests are collected here rather than with ``--doctest-modules`` on the source
folders: those folders (``monitor/``, ``streaming/``, …) are installed as
``fairwatch.monitor``, ``fairwatch.streaming``, … and importing their files by path
would load a second copy of each module under a different name.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

LAYERS = ("fairwatch.app", "fairwatch.streaming", "fairwatch.monitor", "fairwatch.alerts", "fairwatch.intervention")


def _modules() -> list[str]:
    # each layer is walked from its own __path__: in an editable install the layers live in
    # their own top-level folders, not under fairwatch/
    names = {"fairwatch", "fairwatch.errors"}
    for layer in LAYERS:
        package = importlib.import_module(layer)
        names.add(layer)
        names.update(info.name for info in pkgutil.walk_packages(package.__path__, prefix=layer + "."))
    return sorted(name for name in names if not name.endswith("__main__"))


MODULES = _modules()


def test_every_layer_is_collected():
    assert {"fairwatch.monitor.engine", "fairwatch.streaming.events", "fairwatch.alerts.policy"} <= set(MODULES)
    assert {"fairwatch.intervention.pipeline", "fairwatch.app.cli", "fairwatch.alerts.flags.base"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {name}"
