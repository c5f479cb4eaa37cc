"""The console script ends without the interpreter's teardown (`core.teardown`) and loses nothing
by it: the exit code, Python's and the C library's buffered output into a pipe, the exit
handlers. With another thread still running it ends the usual way."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# Run as the console script runs `main`, in a process of its own, with stdout a pipe (fully
# buffered, both in Python and in C). `Freed` reports only when the interpreter's teardown frees it.
SCRIPT = textwrap.dedent("""
    import atexit, ctypes, os, sys, threading

    class Freed:
        def __del__(self):
            os.write(1, b"freed by the teardown\\n")

    kept = Freed()
    atexit.register(lambda: print("exit handler ran"))
    ctypes.CDLL(None).printf(b"printed by C\\n")
    if sys.argv[1] == "--thread":  # one that never ends; a daemon, so that it cannot hold the exit
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    sys.argv = ["swiftformer-qnn", *sys.argv[2:]]
    from swiftformer_qnn.cli import main
    main()
""")


def run(*args: str, thread: bool = False) -> subprocess.CompletedProcess:
    # Without PYTHONUNBUFFERED, which would make both buffers write at once.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", SCRIPT, "--thread" if thread else "--", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_a_command_ends_with_its_output_its_exit_handlers_and_no_teardown():
    done = run("variants")
    assert done.returncode == 0, done.stderr
    assert "SwiftFormer variants" in done.stdout and "encoder" in done.stdout
    assert "printed by C" in done.stdout
    assert "exit handler ran" in done.stdout
    assert "freed by the teardown" not in done.stdout


def test_a_refused_command_keeps_its_exit_code_and_its_one_line():
    done = run("export", "--variant", "nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: Unknown variant 'nope'. Choose one of: xs, s, l1, l3, encoder."]
    assert "exit handler ran" in done.stdout and "printed by C" in done.stdout
    assert "freed by the teardown" not in done.stdout


def test_with_another_thread_running_the_process_ends_the_usual_way():
    done = run("variants", thread=True)
    assert done.returncode == 0, done.stderr
    assert "exit handler ran" in done.stdout and "printed by C" in done.stdout
    assert "freed by the teardown" in done.stdout
