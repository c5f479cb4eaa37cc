"""A signal stops every wait on a worker process, in whichever thread it waits.

Python runs a signal handler only in the main thread, between two bytecodes. The main thread's
own waits are cut short by the handler's exception; a stage thread waiting on a worker process
would wait on while the main thread unwinds (and the orchestrator waits for its running stages
before it removes their outputs). So the CLI's handler sets `STOPPING`, which `wait_child`
polls: the worker is killed and the wait raises `Stopped`.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

# The signals that stop a command (Ctrl-C, SIGTERM, a closed terminal): the CLI's handler, the
# blocks that hold them (core.output_dir.signals_held), a worker's start and the process's end
# (core.teardown) all treat these three.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOPPING = threading.Event()  # set by the CLI's handler when SIGINT, SIGTERM or SIGHUP arrives
POLL_S = 0.1


class Stopped(BaseException):
    """A wait outside the main thread gave up because the process is being stopped by a signal
    (the main thread raises the signal's own exception, which decides the exit code)."""


def wait_child(proc: subprocess.Popen, timeout_s: float | None = None) -> int:
    """`proc`'s exit code, once it has ended. The child is killed (and reaped) when the process
    is being stopped (Stopped), after `timeout_s` (subprocess.TimeoutExpired), or when the wait
    itself is interrupted (a signal's exception in the main thread)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            try:
                return proc.wait(POLL_S)
            except subprocess.TimeoutExpired:
                pass
            if STOPPING.is_set():
                raise Stopped()
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
