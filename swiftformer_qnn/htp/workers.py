"""The parent's side of `python -m swiftformer_qnn.htp.worker` in this environment: a worker
process that imports first and then reads its job on stdin, and how its end is read.

QNN holds the GIL while it compiles, and its HTP emulator runs sessions of one process one
after another: work done in a worker is stopped by a signal (the process is killed), and
workers run side by side on the cores (`htp.emulate`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import ToolchainError


class WorkerProcess:
    """`python -m swiftformer_qnn.htp.worker COMMAND --request -`: imports, then waits for its job."""

    def __init__(self, command: str) -> None:
        from ..core.output_dir import signals_held

        self.command = command
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        try:
            with signals_held():  # the temp dir and the process exist together, or neither
                self.dir = Path(tempfile.mkdtemp(prefix=f"swiftformer-qnn-{command}-"))
                self.result = self.dir / "result.json"
                self.log = self.dir / "worker.log"
                self.spawned_at = time.time()
                with open(self.log, "wb") as log:
                    self.proc = subprocess.Popen(
                        [sys.executable, "-m", "swiftformer_qnn.htp.worker", command, "--request", "-",
                         "--result", str(self.result)],
                        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:  # a full or unwritable temp dir, too many processes
            self.close()
            raise ToolchainError(f"Could not start the {command} worker ({sys.executable}): {exc.strerror or exc}.",
                                 hint="Check the free space and permissions of TMPDIR, and the process limit.") from None
        except BaseException:
            # A failed start, or a signal held above and delivered as the block ends: the caller
            # never gets this object to close, so it closes itself.
            self.close()
            raise

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, job_json: str) -> None:
        """Hand the worker its job (it starts on it at once) and close its stdin."""
        try:
            self.proc.stdin.write(job_json.encode())
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it died: its exit code says how

    def outcome(self, code: int, what: str) -> dict:
        """The result the worker wrote, once it has ended with `code`; a failure it reported is
        raised as itself (a known error by its name), one it could not report as a ToolchainError
        naming `what` it was doing."""
        from ..core.errors import error_named

        try:
            result = json.loads(self.result.read_text())
        except (OSError, ValueError):
            raise ToolchainError(f"The {what} died ({worker_death(code, self.log)}).",
                                 hint="Run it again; if it dies again, it is a bug in QNN or swiftformer-qnn.") from None
        if result.get("status") != "ok":
            kind, message = str(result.get("error_type")), str(result.get("message"))
            known = error_named(kind)
            if known is not None:
                raise known(message)
            if kind == "MemoryError":
                raise MemoryError(message)
            if _is_os_error(kind):  # a full or unwritable temp dir: the machine's, not a bug
                raise ToolchainError(f"The {what} could not read or write its files ({kind}: {message}).",
                                     hint="Check the free space and permissions of TMPDIR and of the output directory.")
            raise RuntimeError(f"{kind} in the {self.command} worker: {message}")
        return result

    def close(self) -> None:
        """Kill the worker if it still runs, and remove its folder."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- workers started ahead ------------------------------------------------------------------
# A worker's interpreter and imports (~0.3-0.4 s CPU) are paid before its job exists:
# `start_ahead` starts the next worker of a command while earlier work runs (the export's
# quantize stage, a candidate's quantization), `take` hands it out, and one nothing took ends
# with `discard_ahead`, or at exit.

_ahead: dict[str, WorkerProcess] = {}  # by command: the one waiting for its job
_ahead_lock = threading.Lock()


def start_ahead(command: str) -> None:
    """Have a worker of `command` started and waiting for its job (started now unless one waits;
    one that died waiting is replaced)."""
    with _ahead_lock:
        waiting = _ahead.get(command)
        if waiting is not None and not waiting.alive():
            waiting.close()  # its folder goes
            waiting = None
        if waiting is None:
            _ahead[command] = WorkerProcess(command)


def take(command: str) -> WorkerProcess:
    """The worker of `command` started ahead if it still waits, else one started now. The caller
    closes it."""
    with _ahead_lock:
        worker = _ahead.pop(command, None)
    if worker is not None and worker.alive():
        return worker
    if worker is not None:
        worker.close()
    return WorkerProcess(command)


def discard_ahead(command: str | None = None) -> None:
    """End the worker of `command` (default: of every command) started ahead that nothing took."""
    with _ahead_lock:
        ended = [_ahead.pop(c) for c in ([command] if command else list(_ahead)) if c in _ahead]
    for worker in ended:
        worker.close()


@contextlib.contextmanager
def started_ahead(command: str) -> Iterator[None]:
    """`start_ahead(command)` for the work inside, and the worker ended if that work did not take
    it (a refusal, a failure, a result found in the cache)."""
    start_ahead(command)
    try:
        yield
    finally:
        discard_ahead(command)


atexit.register(discard_ahead)


def _is_os_error(kind: str) -> bool:
    """Whether the worker's error type names OSError or one of its built-in subclasses."""
    import builtins

    cls = getattr(builtins, kind, None)
    return isinstance(cls, type) and issubclass(cls, OSError)


def worker_death(code: int, log: Path) -> str:
    """How a worker that wrote no result ended: its signal or exit code, and its log's last lines."""
    import signal

    if code < 0:
        try:
            how = signal.Signals(-code).name
        except ValueError:
            how = f"signal {-code}"
    else:
        how = f"exit code {code}"
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and "LIBNATIVE" not in ln]
    tail = " | ".join(kept[-4:])[:500]
    return how + (f": {tail}" if tail else "")
