"""Optional dependencies: the command line builds without them, and a command whose extra
is missing says which extra to install (exit 2) instead of a traceback.

A missing package is simulated the way Python itself reports one: ``sys.modules[name] = None``
makes ``import name`` raise ``ModuleNotFoundError`` (in a subprocess, so this process keeps
its modules).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from fairwatch.app.commands import EXIT_USAGE, EXTRAS, MISSING_EXTRA, missing_modules, needs_extra

#: every heavy library an extra brings, and numpy (base, but not needed to build the parser)
HEAVY = ("sklearn", "fairlearn", "pandas", "scipy", "matplotlib", "networkx", "markdown_it", "joblib")


def _fairwatch(argv: list[str], missing: tuple[str, ...]) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        f"""
        import sys
        for name in {missing!r}:
            sys.modules[name] = None
        from fairwatch.app.cli import main
        sys.exit(main({argv!r}))
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["pipeline", "run", "--help"], ["demo", "--help"]])
def test_help_needs_no_extra(argv: list[str]) -> None:
    res = _fairwatch(argv, HEAVY)
    assert res.returncode == 0, res.stderr
    assert "usage: fairwatch" in res.stdout


def test_building_the_parser_imports_no_heavy_library() -> None:
    code = (
        "import sys; from fairwatch.app.cli import build_parser; build_parser(); "
        f"print(sorted(m for m in {HEAVY + ('numpy', 'pydantic')!r} if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert res.stdout.strip() == "[]"


def test_pipeline_without_its_extra_names_the_extra(tmp_path) -> None:
    res = _fairwatch(["pipeline", "run", "--data", str(tmp_path / "x.csv")], ("sklearn",))
    assert res.returncode == EXIT_USAGE
    assert res.stderr.strip() == MISSING_EXTRA.format(command="pipeline", extra="pipeline")
    assert "pip install 'fairwatch[pipeline]'" in res.stderr


def test_demo_without_its_extra_names_the_extra_before_it_starts() -> None:
    res = _fairwatch(["demo", "--duration", "30", "--no-live"], ("fairlearn",))
    assert res.returncode == EXIT_USAGE
    assert res.stderr.strip() == "fairwatch demo needs the 'demo' extra: pip install 'fairwatch[demo]'"


def test_a_missing_module_of_no_extra_is_a_bug_and_propagates() -> None:
    @needs_extra("audit export", "audit")
    def command() -> int:
        import fairwatch_no_such_module  # noqa: F401

        return 0

    with pytest.raises(ModuleNotFoundError, match="fairwatch_no_such_module"):
        command()


def test_with_every_extra_installed_nothing_is_missing() -> None:
    assert [missing_modules(extra) for extra in EXTRAS] == [[]] * len(EXTRAS)


def test_a_missing_module_of_the_extra_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    @needs_extra("audit export", "audit")
    def command() -> int:
        raise ModuleNotFoundError("No module named 'matplotlib.pyplot'", name="matplotlib.pyplot")

    assert command() == EXIT_USAGE
    assert capsys.readouterr().err == "fairwatch audit export needs the 'audit' extra: pip install 'fairwatch[audit]'\n"
