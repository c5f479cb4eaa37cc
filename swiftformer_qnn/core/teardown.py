"""Ending a finished process without the interpreter's teardown.

When a command or a worker has done its work, everything it writes is written. What is left is
Python freeing the objects of torch, onnx, onnxruntime and QNN one by one, then those
libraries' own destructors: 0.6 s after `export --variant l1 --until compile` on 2 cores, more
than its fold or validate stage takes. `os._exit` skips it. What must still happen runs first:
the exit handlers (temporary folders, logging, workers started ahead), then Python's buffered
output and the C library's (where QNN prints).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from typing import NoReturn

# What Python itself exits with when it cannot flush stdout at exit.
FLUSH_FAILED = 120


def flush_output() -> bool:
    """Python's stdout and stderr, then every C stdio stream (a pipe's buffer is lost by
    `os._exit`). False when stdout or stderr could not be written (a full disk, a device error)."""
    written = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):  # replaced by None, or closed: nothing of ours is in it
            pass
        except OSError:
            written = False
    with contextlib.suppress(OSError, AttributeError, ImportError):
        import ctypes

        ctypes.CDLL(None).fflush(None)
    return written


def _threads_to_wait_for() -> bool:
    """A thread the usual exit would wait for: a non-daemon one besides this one."""
    me = threading.current_thread()
    return any(t is not me and t.is_alive() and not t.daemon for t in threading.enumerate())


def exit_without_teardown(code: int) -> NoReturn:
    """End the process with `code` once its exit handlers have run and its output is flushed
    (`FLUSH_FAILED` instead of 0 when the output could not be written, as Python does).

    From another thread than the main one, with a non-daemon thread still working (the usual
    exit waits for it), or without CPython's handler runner, it exits the usual way."""
    run = getattr(atexit, "_run_exitfuncs", None)  # CPython's own, what its exit calls
    if threading.current_thread() is not threading.main_thread() or _threads_to_wait_for() or run is None:
        sys.exit(code)
    # A signal from here on would escape as a traceback between the handlers and the end (or
    # interrupt a handler); the process ends within milliseconds. Ignored, not blocked: another
    # thread (onnxruntime's, numpy's) would take a blocked one and Python would run its handler.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    run()
    if not flush_output() and code == 0:
        code = FLUSH_FAILED
    os._exit(code)
