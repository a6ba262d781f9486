"""Allocator tuning for repeated predictions.

Every prediction allocates the feature blocks afresh (tens of MB for a few hundred atoms). glibc
serves blocks above its mmap threshold with fresh ``mmap`` pages and hands them back on ``free``, so
each call pays the page faults of first touch again. Raising the mmap and trim thresholds keeps freed
memory in the heap for the next call: 40–45 % less feature time at 500 atoms, about 10 % at 20 and
100 atoms (``benchmarks/features.py --keep-freed-memory``, docs/model.md). The cost is that the
process keeps its peak heap instead of returning it to the operating system.

The setting is process-wide, so the library never changes it on its own: ``mlhcalc predict`` calls
:func:`keep_freed_memory` (disable with ``MLHCALC_KEEP_FREED_MEMORY=0``); a script that runs many
predictions (MD post-processing) can call it once at the start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers of glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks (of any size up to 2 GiB) for reuse instead of
    returning them to the operating system. Returns True if the setting took effect, False where it
    does not apply (not Linux/glibc, or ``MLHCALC_KEEP_FREED_MEMORY=0``)."""
    if os.environ.get("MLHCALC_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST))
