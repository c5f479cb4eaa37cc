"""Ending a finished process without the interpreter's teardown.

When a command or a worker has done its work, everything it writes is written. What is left is
Python freeing the objects of torch, onnx, onnxruntime and QNN one by one, then those
libraries' own destructors: 0.6 s after `export --variant l1 --until compile` on 2 cores, more
than its fold or validate stage takes. `os._exit` skips it. What must still happen runs first:
the exit handlers (temporary folders, logging), then Python's buffered output and the C
library's (where QNN prints).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def flush_output() -> None:
    """Python's stdout and stderr, then every C stdio stream (a pipe's buffer is lost by `os._exit`)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader gone, a stream closed or replaced by None
            stream.flush()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).fflush(None)


def exit_without_teardown(code: int) -> NoReturn:
    """End the process with `code` once its exit handlers have run and its output is flushed.

    Only from the main thread with no other Python thread alive; otherwise it exits the usual
    way, which first waits for the other threads' work."""
    if threading.current_thread() is not threading.main_thread() or threading.active_count() > 1:
        sys.exit(code)
    # What Python runs at exit before it frees anything: weakref finalizers (temporary folders),
    # logging's flush. The function is CPython's own, used by its `atexit` module.
    run = getattr(atexit, "_run_exitfuncs", None)
    if run is not None:
        run()
    flush_output()
    os._exit(code)
