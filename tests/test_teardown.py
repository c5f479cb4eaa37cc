"""The console script ends without the interpreter's teardown (`core.teardown`) and loses nothing
by it: the exit code, Python's and the C library's buffered output into a pipe, what the exit
handlers write, a failed write of its output (said, exit 2). With a non-daemon thread still
working it ends the usual way, which waits for that thread."""

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
    if sys.argv[1].startswith("--signal"):  # runs last (handlers run in reverse): SIGTERM(s), then goes on
        import signal
        times = 2 if sys.argv[1] == "--signal-twice" else 1
        atexit.register(lambda: ([os.kill(os.getpid(), signal.SIGTERM) for _ in range(times)],
                                 print("handler went on")))
    atexit.register(lambda: print("exit handler ran"))  # into stdout's buffer, after the command
    ctypes.CDLL(None).printf(b"printed by C\\n")
    sys.argv, thread = ["swiftformer-qnn", *sys.argv[2:]], sys.argv[1]
    from swiftformer_qnn.cli import main
    if thread == "--daemon":  # never ends, and the usual exit would not wait for it
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    elif thread == "--worker":  # works until the main thread has ended, as the usual exit lets it
        def work():
            while threading.main_thread().is_alive():
                time.sleep(0.01)
            os.write(2, b"thread finished\\n")
        threading.Thread(target=work).start()
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
    assert "exit handler ran" in done.stdout
    assert "freed by the teardown" not in done.stderr


def test_a_refused_command_keeps_its_exit_code_and_its_one_line():
    done = run("export", "--variant", "nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: Unknown variant 'nope'. Choose one of: xs, s, l1, l3, encoder."]
    assert "exit handler ran" in done.stdout and "printed by C" in done.stdout
    assert "freed by the teardown" not in done.stderr


def test_a_daemon_thread_does_not_hold_the_fast_end():
    done = run("variants", thread="--daemon")
    assert done.returncode == 0, done.stderr
    assert "exit handler ran" in done.stdout and "printed by C" in done.stdout
    assert "freed by the teardown" not in done.stderr


def test_with_a_thread_still_working_the_process_waits_for_it_and_ends_the_usual_way():
    done = run("variants", thread="--worker")
    assert done.returncode == 0, done.stderr
    assert "thread finished" in done.stderr and "exit handler ran" in done.stdout
    assert "freed by the teardown" in done.stderr


def test_output_that_cannot_be_written_is_said_in_one_line_and_exits_2(tmp_path):
    # /dev/full takes the open and refuses every write (ENOSPC). The JSON summary, printed whole
    # (under the text buffer's 8 KB, so nothing is written before the end), and the exit
    # handler's line are lost at the final flush: Python's own exit would say nothing and give 120.
    with open("/dev/full", "w") as full:
        done = run("export", "--variant", "encoder", "--resolution", "16", "--until", "onnx", "--calibration-count", "4",
                   "--heldout-count", "2", "--json", "--output-dir", str(tmp_path / "out"), stdout=full)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: could not write the output (No space left on device): check the free space and the device it goes to.")
    assert (tmp_path / "out" / "manifest.json").is_file()  # the export itself was done


def test_a_signal_during_the_exit_handlers_lets_them_finish_and_ends_with_its_code():
    done = run("variants", thread="--signal")
    assert done.returncode == 143, done.stderr
    assert "exit handler ran" in done.stdout and "handler went on" in done.stdout
    assert "Traceback" not in done.stderr and "freed by the teardown" not in done.stderr


def test_a_second_signal_ends_the_process_at_once():
    done = run("variants", thread="--signal-twice")
    assert done.returncode == -15, done.stderr  # killed by the second SIGTERM
    assert "handler went on" not in done.stdout


def test_after_a_first_signal_the_next_one_during_the_exit_handlers_ends_the_process_at_once():
    # As the CLI leaves them once a signal has arrived (cli._app._on_signal): the default.
    code = textwrap.dedent("""
        import atexit, os, signal
        from swiftformer_qnn.core.teardown import exit_without_teardown
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        atexit.register(lambda: (os.kill(os.getpid(), signal.SIGTERM), print("handler went on")))
        exit_without_teardown(130)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -15, done.stderr
    assert "handler went on" not in done.stdout


def test_a_worker_given_its_job_in_a_file_writes_its_result_and_ends_without_teardown(tmp_path):
    # As a sweep runs each QNN version's worker: `compile --request FILE`. A request that is not a
    # job makes the worker report the failure (exit 4) without loading QNN.
    (tmp_path / "request.json").write_text("{}")
    code = textwrap.dedent("""
        import os, sys

        class Freed:
            def __del__(self):
                os.write(2, b"freed by the teardown\\n")

        kept = Freed()
        from swiftformer_qnn.htp import worker
        sys.exit(worker.main(sys.argv[1:]))
    """)
    done = subprocess.run([sys.executable, "-c", code, "compile", "--request", str(tmp_path / "request.json"),
                           "--result", str(tmp_path / "result.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stderr
    assert '"status": "failed"' in (tmp_path / "result.json").read_text()
    assert "freed by the teardown" not in done.stderr
