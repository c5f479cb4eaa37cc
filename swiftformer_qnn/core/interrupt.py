"""A signal stops every wait on a worker process, in whichever thread it waits.

Python runs a signal handler only in the main thread, between two bytecodes. The main thread's
own waits are cut short by the handler's exception; a stage thread waiting on a worker process
would wait on while the main thread unwinds (and the orchestrator waits for its running stages
before it removes their outputs). So the CLI's handler sets `STOPPING`, which `wait_child`
looks at every POLL_S: the worker is killed and the wait raises `Stopped`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

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
        with _end_of(proc) as ended:
            while True:
                code = _wait(proc, ended)
                if code is not None:
                    return code
                if STOPPING.is_set():
                    raise Stopped()
                if deadline is not None and time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(proc.args, timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def _wait(proc: subprocess.Popen, ended: select.poll | None) -> int | None:
    """`proc`'s exit code if it ends within POLL_S, else None. With `ended` (`_end_of`) the
    thread sleeps until the child's end or POLL_S. Popen.wait(timeout) checks every 0.5-50 ms
    instead, and a sweep has one such thread per QNN version: with five, the parent spent 0.18
    CPU-s between its start-up and the workers' end (L1, 8 s), against 0.02-0.03 with the pidfd
    (one run each), on the cores QNN's workers need."""
    if ended is None:
        try:
            return proc.wait(POLL_S)
        except subprocess.TimeoutExpired:
            return None
    if ended.poll(POLL_S * 1000):  # the pidfd is readable: the child has ended, so this returns at once
        return proc.wait()
    return None


@contextlib.contextmanager
def _end_of(proc: subprocess.Popen) -> Iterator[select.poll | None]:
    """A poll object on a pidfd of `proc` (Linux 5.3+; not select.select, which refuses
    descriptors from 1024 on), or None: where there is no pidfd (another system, an old kernel),
    and for a child already reaped, whose pid may be another process's by now."""
    if proc.returncode is not None:
        yield None
        return
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        yield None
        return
    try:
        ended = select.poll()
        ended.register(fd, select.POLLIN)
        yield ended
    finally:
        os.close(fd)
