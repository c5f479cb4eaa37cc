"""The process's heap, where glibc's allocator keeps what the stages free.

glibc gives each new thread an arena of its own on its first allocation, until there are 8 per
core, and memory freed in an arena stays with it: the stages' threads, onnxruntime's and
PyTorch's each leave freed graphs, sessions and tensors behind in theirs. Elsewhere (not glibc:
no `mallopt`, no `malloc_trim`) both functions do nothing.
"""

from __future__ import annotations

import ctypes
import os

_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
# Two arenas: on a cold L1 export, the export's own process held 485 MB (PSS) during verify
# against 594 MB with glibc's default, and the whole process tree (with its workers) peaked at
# 861-894 MB (3 runs) against 939-1050 MB (7 runs). Time, on a machine losing half its CPU to
# its host: `--until onnx` 10.6-14.2 s against 13.0-17.1 s (3 rotations); the whole export,
# with its workers capped too, 35.8-37.7 s against 30.4-36.4 s (3 interleaved pairs). The
# workers' own peaks did not move with the cap.
ARENAS = 2


def _libc():
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Let glibc create at most `arenas` heaps for this process's threads (set at start-up,
    before the threads: arenas made earlier stay). A MALLOC_ARENA_MAX the user set wins. True
    when glibc took the setting."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    return bool(mallopt and mallopt(_M_ARENA_MAX, arenas) == 1)


def release_freed_memory() -> None:
    """Give the heap a stage freed back to the system (glibc keeps it otherwise): the graphs,
    sessions and tensors of one stage would add to the next stage's peak. Measured on a cold L1
    export run stage after stage: peak RSS 1634 MB without, 1190 MB with."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)
