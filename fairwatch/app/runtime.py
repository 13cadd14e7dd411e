"""Process-level tuning for long-running, allocation-heavy stream processing.

The engine decodes every event into short-lived containers, which makes
CPython's cyclic collector run often; each full collection then walks every
object the imports left behind (numpy, scipy, pandas: ~100k objects) although
none of them will ever become garbage. Freezing that import-time heap and
collecting the young generation less often gives the engine back ~40 % of its
time (``benchmarks/engine_throughput.py`` measures it). Reference counting
still frees everything immediately; only cycle detection runs less often.

glibc's malloc, by default, raises its mmap threshold each time a large block
is freed, so later large blocks (the join index's hash table when it resizes,
big numpy temporaries) come from the heap and leave holes that are never
returned: a daemon's RSS then creeps up in steps of tens of MB over hours.
Fixing the threshold keeps every block above it in its own mapping, returned
to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

__all__ = ["tune_gc", "tune_malloc", "GC_THRESHOLDS", "MMAP_THRESHOLD"]

GC_THRESHOLDS = (50_000, 20, 100)
MMAP_THRESHOLD = 1 << 20  # blocks of 1 MiB and more are mapped on their own
_M_MMAP_THRESHOLD = -3  # from glibc's <malloc.h>


def tune_gc() -> None:
    """Freeze the heap built so far and raise the collection thresholds (idempotent);
    also :func:`tune_malloc`."""
    tune_malloc()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD`; ``False`` where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
