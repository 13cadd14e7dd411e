"""Writing run artifacts: JSON with numpy scalars, paths and sets converted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_json"]


def _default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set):
        return sorted(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (numpy scalars and paths converted).

    >>> import tempfile
    >>> p = write_json(Path(tempfile.mkdtemp()) / "a" / "x.json", {"n": np.int64(3), "v": np.float32(0.5)})
    >>> p.read_text()
    '{\\n  "n": 3,\\n  "v": 0.5\\n}\\n'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=_default, allow_nan=False) + "\n", encoding="utf-8")
    return path
