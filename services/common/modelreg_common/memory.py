"""glibc malloc tuning for a process that moves multi-MiB buffers (artifact transfers).

CPython hands every large `bytes` to malloc. glibc serves a request above its mmap threshold
with a private mapping, but raises that threshold (up to 32 MiB) each time such a mapping is
freed, so after the first few MiB-sized chunks every later one lands in a heap arena, one per
thread that allocated it (worker threads hash and write parts). Freed chunks in the middle of
an arena stay resident: RSS grows with the file and with the number of threads, well past the
bytes actually in flight. A fixed threshold keeps large buffers in mappings that go back to
the OS when freed; a trim threshold returns the top of each arena; fewer arenas bound the
rest.

`tune_malloc()` is a no-op off glibc, and leaves alone any setting given in the environment
(`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `MALLOC_ARENA_MAX`), which glibc read
at start-up and which the operator's choice should win over.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

MIB = 1024 * 1024

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

# glibc's own ceiling for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2).
MAX_MMAP_THRESHOLD = 32 * MIB


@dataclass(frozen=True)
class MallocTuning:
    """What `tune_malloc` set (None: left as it was)."""

    mmap_threshold: int | None = None
    trim_threshold: int | None = None
    arena_max: int | None = None


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    # musl and others have no gnu_get_libc_version; their mallopt (if any) means something else.
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def tune_malloc(
    *,
    mmap_threshold: int = 1 * MIB,
    trim_threshold: int = 8 * MIB,
    arena_max: int = 2,
    environ: Mapping[str, str] | None = None,
) -> MallocTuning:
    """Bound the memory glibc keeps after large buffers are freed; call once at start-up
    (safe to call again). Returns what was set; nothing on other C libraries."""
    if mmap_threshold < 0 or mmap_threshold > MAX_MMAP_THRESHOLD:
        raise ValueError(f"mmap_threshold must be within 0..{MAX_MMAP_THRESHOLD}")
    if trim_threshold < 0:
        raise ValueError("trim_threshold must not be negative")
    if arena_max < 0:
        raise ValueError("arena_max must not be negative (0: leave as is)")
    libc = _glibc()
    if libc is None:
        return MallocTuning()
    env = os.environ if environ is None else environ
    wanted = {
        "mmap_threshold": (M_MMAP_THRESHOLD, mmap_threshold, "MALLOC_MMAP_THRESHOLD_"),
        "trim_threshold": (M_TRIM_THRESHOLD, trim_threshold, "MALLOC_TRIM_THRESHOLD_"),
        "arena_max": (M_ARENA_MAX, arena_max, "MALLOC_ARENA_MAX"),
    }
    applied: dict[str, int] = {}
    for name, (param, value, variable) in wanted.items():
        if variable in env or (name == "arena_max" and value == 0):
            continue
        # mallopt returns 1 on success, 0 on a value it refuses.
        if libc.mallopt(param, value) == 1:
            applied[name] = value
    return MallocTuning(**applied)
