"""The console script ends without the interpreter's teardown (`core.teardown`) and loses nothing
by it: the exit code, Python's and the C library's buffered output into a pipe, the exit
handlers, a failed write of its output. With a non-daemon thread still working it ends the
usual way, which waits for that thread."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# Run as the console script runs `main`, in a process of its own, with stdout a pipe (fully
# buffered, both in Python and in C). `Freed` reports only when the interpreter's teardown frees it.
SCRIPT = textwrap.dedent("""
    import atexit, ctypes, os, sys, threading, time

    class Freed:
        def __del__(self):
            os.write(2, b"freed by the teardown\\n")

    kept = Freed()
    atexit.register(lambda: print("exit handler ran", file=sys.stderr))
    ctypes.CDLL(None).printf(b"printed by C\\n")
    sys.argv, thread = ["swiftformer-qnn", *sys.argv[2:]], sys.argv[1]
    from swiftformer_qnn.cli import main
    if thread == "--daemon":  # never ends, and the usual exit would not wait for it
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    elif thread == "--worker":  # still working when the command ends
        threading.Thread(target=lambda: (time.sleep(1.5), os.write(2, b"thread finished\\n"))).start()
    main()
""")


def run(*args: str, thread: str = "--", stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    # Without PYTHONUNBUFFERED, which would make both buffers write at once.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", SCRIPT, thread, *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=120, env=env)


def test_a_command_ends_with_its_output_its_exit_handlers_and_no_teardown():
    done = run("variants")
    assert done.returncode == 0, done.stderr
    assert "SwiftFormer variants" in done.stdout and "encoder" in done.stdout
    assert "printed by C" in done.stdout
    assert "exit handler ran" in done.stderr
    assert "freed by the teardown" not in done.stderr


def test_a_refused_command_keeps_its_exit_code_and_its_one_line():
    done = run("export", "--variant", "nope")
    assert done.returncode == 2
    lines = [line for line in done.stderr.strip().splitlines() if line != "exit handler ran"]
    assert lines == ["error: Unknown variant 'nope'. Choose one of: xs, s, l1, l3, encoder."]
    assert "exit handler ran" in done.stderr and "printed by C" in done.stdout
    assert "freed by the teardown" not in done.stderr


def test_a_daemon_thread_does_not_hold_the_fast_end():
    done = run("variants", thread="--daemon")
    assert done.returncode == 0, done.stderr
    assert "exit handler ran" in done.stderr and "printed by C" in done.stdout
    assert "freed by the teardown" not in done.stderr


def test_with_a_thread_still_working_the_process_waits_for_it_and_ends_the_usual_way():
    done = run("variants", thread="--worker")
    assert done.returncode == 0, done.stderr
    assert "thread finished" in done.stderr and "exit handler ran" in done.stderr
    assert "freed by the teardown" in done.stderr


def test_output_that_cannot_be_written_is_a_failed_exit(tmp_path):
    # /dev/full takes the open and refuses every write (ENOSPC): the JSON, written at once and
    # flushed at the end, is lost, which Python's own exit reports as 120.
    with open("/dev/full", "w") as full:
        done = run("export", "--variant", "encoder", "--resolution", "16", "--until", "onnx", "--calibration-count", "4",
                   "--heldout-count", "2", "--json", "--output-dir", str(tmp_path / "out"), stdout=full)
    assert done.returncode == 120, done.stderr
    assert "exit handler ran" in done.stderr
    assert (tmp_path / "out" / "manifest.json").is_file()  # the export itself was done
