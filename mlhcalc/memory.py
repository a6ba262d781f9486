"""Allocator tuning for repeated predictions.

Every prediction allocates the feature blocks afresh (tens of MB for a few hundred atoms). glibc
serves blocks above its mmap threshold with fresh ``mmap`` pages and hands them back on ``free``, so
each call pays the page faults of first touch again: measured as a third of the feature time for a
20-atom molecule (``benchmarks/features.py --keep-freed-memory``, docs/model.md). Raising the mmap
and trim thresholds keeps freed memory in the heap for the next call. The cost is that the process
keeps its peak heap instead of returning it to the operating system.

The setting is process-wide, so the library never changes it on its own: the ``mlhcalc`` command
line calls :func:`keep_freed_memory` (disable with ``MLHCALC_KEEP_FREED_MEMORY=0``); a script that
runs many predictions (MD post-processing) can call it once at the start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers of glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1  # mallopt takes an int


def keep_freed_memory(threshold: int = _LARGEST) -> bool:
    """Ask glibc's malloc to keep freed blocks up to ``threshold`` bytes for reuse instead of
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
    threshold = int(min(max(threshold, 0), _LARGEST))
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold))
