"""mlhcalc.memory: the allocator setting takes effect on glibc and can be switched off."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

from mlhcalc.memory import keep_freed_memory

_GLIBC = sys.platform.startswith("linux") and "libc.so.6" in (ctypes.util.find_library("c") or "")


@pytest.mark.skipif(not _GLIBC, reason="mallopt is glibc's")
def test_keep_freed_memory_takes_effect_on_glibc():
    # in a child process: the setting is process-wide
    code = "from mlhcalc.memory import keep_freed_memory; print(keep_freed_memory())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


def test_keep_freed_memory_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("MLHCALC_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False
