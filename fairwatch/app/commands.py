"""What every ``fairwatch`` command function shares: exit codes, configuration and logging
set-up, and the message for a feature whose optional dependencies are not installed.

Kept apart from :mod:`fairwatch.app.cli` so that the command modules (``audit_cli``, …)
use these without importing the parser that imports them (no cycle), and cheap to import:
the configuration loader loads only when a command runs.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fairwatch.alerts.config import AlertsConfig
    from fairwatch.app.config import Config

__all__ = [
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXTRAS",
    "MISSING_EXTRA",
    "load_alerts",
    "load_command_config",
    "missing_modules",
    "needs_extra",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

# extra (pyproject [project.optional-dependencies]) -> the top-level modules it installs
_PIPELINE = frozenset(
    {"pandas", "scipy", "sklearn", "fairlearn", "networkx", "matplotlib", "markdown_it", "threadpoolctl", "joblib"}
)
EXTRAS: dict[str, frozenset[str]] = {"pipeline": _PIPELINE, "demo": _PIPELINE, "audit": frozenset({"matplotlib"})}
MISSING_EXTRA = "fairwatch {command} needs the {extra!r} extra: pip install 'fairwatch[{extra}]'"


def load_command_config(args: argparse.Namespace) -> Config:
    """Load the configuration named by ``--config`` and set up logging from it and the options."""
    from fairwatch.app.config import load_config
    from fairwatch.app.logs import configure_logging

    cfg = load_config(getattr(args, "config", None))
    level = getattr(args, "log_level", None) or cfg.log.level
    configure_logging(level, getattr(args, "log_format", None) or cfg.log.format)
    return cfg


def load_alerts(path: str | None) -> AlertsConfig:
    """``fairwatch flags`` / ``baseline``: the ``alerts:`` section through the same loader as
    every command (``FAIRWATCH_ALERTS__…`` apply; errors are :class:`ConfigError`, exit 3)."""
    from fairwatch.app.config import load_config

    return load_config(path).alerts


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found without importing them)."""
    from importlib.util import find_spec

    return sorted(m for m in EXTRAS[extra] if find_spec(m) is None)


def needs_extra(command: str, extra: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a command function: if a module of ``extra`` is missing, say which extra to
    install and return exit code 2 instead of a traceback.

    Checked before the command starts (a demo or a daemon does not fail minutes later when
    it first needs the module) and again for a :class:`ModuleNotFoundError` the command
    raises; only one for the extra's own modules is caught, any other is a bug and propagates.
    """
    modules = EXTRAS[extra]

    def refuse() -> int:
        print(MISSING_EXTRA.format(command=command, extra=extra), file=sys.stderr)
        return EXIT_USAGE

    def wrap(func: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(func)
        def run(*args, **kwargs) -> int:
            if missing_modules(extra):
                return refuse()
            try:
                return func(*args, **kwargs)
            except ModuleNotFoundError as exc:
                if (exc.name or "").partition(".")[0] not in modules:
                    raise
                return refuse()

        return run

    return wrap
