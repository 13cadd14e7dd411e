"""Engine state ⇄ bytes, for checkpoints (docs/files.md, "Checkpoint").

A checkpoint blob is an ``.npz`` archive (no pickle) of named numpy arrays plus
one JSON document for everything that is not an array. Counts stay integers and
score sums stay float64, so a restored engine continues exactly where it stopped.

>>> blob = pack({"a": np.arange(3)}, {"version": 1})
>>> arrays, meta = unpack(blob)
>>> arrays["a"].tolist(), meta
([0, 1, 2], {'version': 1})
"""

from __future__ import annotations

import io

import numpy as np
import orjson

__all__ = ["pack", "unpack", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def pack(arrays: dict[str, np.ndarray], meta: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(orjson.dumps(meta), np.uint8), **arrays)
    return buf.getvalue()


def unpack(blob: bytes) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
        meta = orjson.loads(z["__meta__"].tobytes())
    return arrays, meta
