"""Helpers of the packaging tests (test_wheel, test_layers): build from a clean copy."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: never part of a build: environments, caches, setuptools' build/ (whose stale files would leak in), and
#: the extension an editable install compiled into the source tree (a wheel must build its own)
IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.so", "*.pyd"
)


def copy_sources(dest: Path) -> Path:
    """Copy the repository's sources to ``dest`` (a fresh folder) and return it."""
    shutil.copytree(ROOT, dest, ignore=IGNORE)
    return dest
