"""glibc malloc tuning for a process that moves multi-MiB buffers (artifact transfers).

CPython hands every large `bytes` to malloc. glibc gives each thread that allocates its own heap
arena (up to 8 per core); the gRPC core's threads, the worker threads that hash and write parts,
and the event loop each keep the freed multi-MiB chunks they allocated in their own arena, so
the server's RSS ends up far above the bytes actually in flight (W4 on S3: +118 to +184 MiB for
a transfer that holds about 40 MiB). Capping the arenas makes those threads share, and reuse,
the same freed chunks: W4 growth on S3 drops to +88-95 MiB at 1 GiB at no measurable CPU cost
(`release_free_memory` now and then keeps it there for larger files).

A fixed `M_MMAP_THRESHOLD` (e.g. 1 MiB) would return every chunk to the OS at once, but then
every chunk is a fresh mapping, faulted in and zeroed: in W4 that costs the server 2-2.5x (S3
upload) and 3x (download) the CPU, so it is left to glibc's dynamic default unless asked for.

`tune_malloc()` is a no-op off glibc, and leaves alone any setting given in the environment
(`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`), which glibc read at
start-up and which the operator's choice should win over. Call it early (arenas already
created by threads stay).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
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

DEFAULT_ARENA_MAX = 2


@dataclass(frozen=True)
class MallocTuning:
    """What `tune_malloc` set (None: left as it was)."""

    arena_max: int | None = None
    mmap_threshold: int | None = None
    trim_threshold: int | None = None


@functools.cache
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
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def tune_malloc(
    *,
    arena_max: int | None = DEFAULT_ARENA_MAX,
    mmap_threshold: int | None = None,
    trim_threshold: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> MallocTuning:
    """Bound the memory glibc keeps after large buffers are freed; call once at start-up
    (safe to call again). None leaves a setting as it is. Setting either threshold turns off
    glibc's dynamic mmap threshold (see the module's note on its CPU cost). Returns what was
    set; nothing on other C libraries."""
    if arena_max is not None and arena_max < 1:
        raise ValueError("arena_max must be at least 1 (None: leave as is)")
    if mmap_threshold is not None and not 0 <= mmap_threshold <= MAX_MMAP_THRESHOLD:
        raise ValueError(f"mmap_threshold must be within 0..{MAX_MMAP_THRESHOLD}")
    if trim_threshold is not None and trim_threshold < 0:
        raise ValueError("trim_threshold must not be negative")
    libc = _glibc()
    if libc is None:
        return MallocTuning()
    env = os.environ if environ is None else environ
    wanted = {
        "arena_max": (M_ARENA_MAX, arena_max, "MALLOC_ARENA_MAX"),
        "mmap_threshold": (M_MMAP_THRESHOLD, mmap_threshold, "MALLOC_MMAP_THRESHOLD_"),
        "trim_threshold": (M_TRIM_THRESHOLD, trim_threshold, "MALLOC_TRIM_THRESHOLD_"),
    }
    applied: dict[str, int] = {}
    for name, (param, value, variable) in wanted.items():
        if value is None or variable in env:
            continue
        # mallopt returns 1 on success, 0 on a value it refuses.
        if libc.mallopt(param, value) == 1:
            applied[name] = value
    return MallocTuning(**applied)


def release_free_memory() -> bool:
    """Give the OS back the free pages in every malloc arena (glibc `malloc_trim(0)`). Freed
    buffers of assorted sizes (socket write buffers, received messages) fragment the heap so
    that its resident part grows with the bytes that went through, not with what is live; an
    occasional trim bounds that without the CPU a low mmap threshold costs. Returns whether
    anything was released; False off glibc."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))


def freeze_startup_heap() -> None:
    """Keep what start-up allocated out of every later cyclic garbage collection.

    A full collection walks every tracked object: modules, protobuf descriptors, gRPC and
    pydantic internals, most of which live as long as the process. Walking them stalls the
    event loop mid-request (W5 saw a 13.5 ms pause in one create -> event delivery); after
    `gc.freeze()` a collection walks only objects made since. Call once the server is up.
    """
    gc.collect()
    gc.freeze()
