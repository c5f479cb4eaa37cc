"""core.heap: the arena cap holds glibc to the arenas it allows, and a user's own setting wins."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from swiftformer_qnn.core import heap

# Starts threads that each allocate, then counts glibc's heaps (`malloc_info` lists one <heap>
# per arena, the main one included).
_COUNT_ARENAS = r"""
import ctypes, re, sys, tempfile, threading
from swiftformer_qnn.core.heap import cap_malloc_arenas
capped = cap_malloc_arenas() if sys.argv[1] == "cap" else None
gate = threading.Barrier(7)
def work():
    blocks = [bytearray(4096) for _ in range(64)]  # malloc from this thread, all at once
    gate.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
[t.start() for t in threads]
gate.wait()
[t.join() for t in threads]
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as f:
    fp = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    xml = open(f.name).read()
print(capped, len(re.findall(r'<heap nr="\d+">', xml)))
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="glibc's allocator")


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    run_env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run([sys.executable, "-c", _COUNT_ARENAS, mode], env=run_env, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    return out[0], int(out[1])


@glibc
def test_the_cap_holds_the_threads_to_its_arenas():
    _, uncapped = _arenas("default")
    capped_flag, capped = _arenas("cap")
    assert uncapped > heap.ARENAS  # six allocating threads get arenas of their own by default
    assert capped_flag == "True"
    assert capped <= heap.ARENAS


@glibc
def test_a_users_malloc_arena_max_wins():
    flag, arenas = _arenas("cap", MALLOC_ARENA_MAX="4")
    assert flag == "False"
    assert heap.ARENAS < arenas <= 4


def test_no_cap_where_the_user_set_one(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "3")
    called = []
    monkeypatch.setattr(heap, "_libc", lambda: called.append(1))
    assert heap.cap_malloc_arenas() is False
    assert not called  # glibc is not even asked


def test_nothing_to_do_without_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setattr(heap, "_libc", lambda: None)
    assert heap.cap_malloc_arenas() is False
    heap.release_freed_memory()  # no error
