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

from .interrupt import STOP_SIGNALS

# The tool's exit code for what the environment refused (docs: exit codes), here the output.
OUTPUT_LOST = 2


def flush_output() -> OSError | None:
    """Python's stdout and stderr, then every C stdio stream (a pipe's buffer is lost by
    `os._exit`). The error when stdout or stderr could not be written (a full disk, a device error)."""
    failed = None
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):  # replaced by None, or closed: nothing of ours is in it
            pass
        except OSError as exc:
            failed = failed or exc
    with contextlib.suppress(OSError, AttributeError, ImportError):
        import ctypes

        ctypes.CDLL(None).fflush(None)
    return failed


def _threads_to_wait_for() -> bool:
    """A thread the usual exit would wait for: a non-daemon one besides this one."""
    me = threading.current_thread()
    return any(t is not me and t.is_alive() and not t.daemon for t in threading.enumerate())


def exit_without_teardown(code: int) -> NoReturn:
    """End the process with `code` once its exit handlers have run and its output is flushed.
    Output that could not be written is said in one line on stderr, and a 0 becomes
    `OUTPUT_LOST`. A signal from the handlers on is noted, not raised (a second one ends the
    process at once), and ends it with 128 + its number.

    From another thread than the main one, with a non-daemon thread still working (the usual
    exit waits for it), or without CPython's handler runner, it exits the usual way (whose
    failed flush Python reports itself, with 120)."""
    run = getattr(atexit, "_run_exitfuncs", None)  # CPython's own, what its exit calls
    if threading.current_thread() is not threading.main_thread() or _threads_to_wait_for() or run is None:
        sys.exit(code)
    arrived: list[int] = []

    def note(signum, _frame):
        # Raised here it would escape as a traceback between the handlers and the end, or cut a
        # handler short; the process ends within milliseconds anyway.
        arrived.append(signum)
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)

    # Only where a handler of Python's stands: after a first signal the CLI's own reset them to
    # the default, so that a second one stops the process at once, and that stays so.
    if all(callable(signal.getsignal(sig)) for sig in STOP_SIGNALS):
        for sig in STOP_SIGNALS:
            signal.signal(sig, note)
    run()
    lost = flush_output()
    if lost is not None:
        with contextlib.suppress(OSError):
            os.write(2, f"error: could not write the output ({lost.strerror or lost}): check the free space "
                        "and the device it goes to.\n".encode())
        code = code or OUTPUT_LOST
    if arrived:
        code = 128 + arrived[0]
    os._exit(code)
