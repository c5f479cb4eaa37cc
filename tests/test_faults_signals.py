"""Real signals to a real `swiftformer-qnn export` process at different stages: Ctrl-C and
SIGTERM print one line, remove partial outputs and cache temp dirs, and exit 130 / 143;
after SIGKILL (no cleanup possible) the next run removes what the dead one left. And the wait
on a worker process (`core.interrupt.wait_child`): it sleeps until the worker ends, gives its
code, and a stop kills the worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_checks import processes_naming

from swiftformer_qnn.pipeline.artifacts import read_manifest

ARGS = ["export", "--variant", "encoder", "--resolution", "16", "--calibration-count", "4", "--heldout-count", "2"]


def _start(tmp_path: Path, extra: list[str]) -> tuple[subprocess.Popen, Path]:
    err = tmp_path / "stderr.txt"
    env = {**os.environ, "SWIFTFORMER_QNN_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "swiftformer_qnn.cli", *ARGS, *extra, "--output-dir", str(tmp_path / "out" / "enc")],
        stdout=subprocess.DEVNULL, stderr=open(err, "w"), env=env, cwd=tmp_path,
    )
    return proc, err


def _wait_for(proc: subprocess.Popen, tmp_path: Path, stage: str) -> None:
    """Until `stage` is producing its result (its temp dir in the stage cache exists): no timing assumptions."""
    where = tmp_path / "cache" / "stages" / stage
    while not (where.is_dir() and any(".tmp-" in p.name for p in where.iterdir())):
        if proc.poll() is not None:
            pytest.fail(f"finished before stage {stage!r} ran")
        time.sleep(0.02)


def _leftovers(tmp_path: Path) -> list[str]:
    out = tmp_path / "out"
    found = [p.name for p in out.iterdir()] if out.exists() else []
    found += [str(p.relative_to(tmp_path)) for p in (tmp_path / "cache").rglob(".*")]
    return found


@pytest.mark.parametrize("sig, stage, code", [
    (signal.SIGINT, "export", 130),
    (signal.SIGTERM, "inputs", 143),
    (signal.SIGTERM, "quantize", 143),
])
def test_interrupt_prints_one_line_cleans_up_and_exits_128_plus_signal(tmp_path, sig, stage, code):
    proc, err = _start(tmp_path, [])
    _wait_for(proc, tmp_path, stage)
    proc.send_signal(sig)
    assert proc.wait(timeout=300) == code, err.read_text()[-3000:]
    text = err.read_text()
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and ("Interrupted" in lines[0] or "Stopped by SIGTERM" in lines[0]), text[-1500:]
    assert _leftovers(tmp_path) == []  # no partial output, no cache temp dir
    assert not (tmp_path / "out" / "enc").exists()


def test_after_sigkill_the_next_run_removes_the_leftovers_and_finishes(tmp_path):
    proc, err = _start(tmp_path, ["--until", "quantize"])
    _wait_for(proc, tmp_path, "quantize")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    left = _leftovers(tmp_path)
    assert any(".enc.partial-" in name for name in left), left  # killed: nothing could clean up
    assert any(".tmp-" in name for name in left), left
    assert not (tmp_path / "out" / "enc").exists()  # and nothing that looks complete

    again, err = _start(tmp_path, ["--until", "quantize"])
    assert again.wait(timeout=600) == 0, err.read_text()[-2000:]
    assert _leftovers(tmp_path) == ["enc"]
    manifest = read_manifest(tmp_path / "out" / "enc")
    assert manifest is not None and manifest.stage("quantize") is not None
    assert "interrupted run" in err.read_text()  # said what it removed



def _large_declared_graph(path: Path) -> Path:
    """One Relu on a declared 1x4x4000x4000 float tensor: no weights, a small file, but QNN's
    graph finalization takes many seconds over it (all of them in native code)."""
    import onnx
    from onnx import TensorProto, helper

    shape = [1, 4, 4000, 4000]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "large",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what this onnxruntime reads
    onnx.save(model, str(path))
    return path


def _compile_cli(tmp_path: Path, model: Path, run: str) -> tuple[subprocess.Popen, Path, Path]:
    """`swiftformer-qnn compile MODEL --fp16` with a cache and a temp dir of its own."""
    (tmp_path / run / "tmp").mkdir(parents=True)
    err = tmp_path / run / "stderr.txt"
    env = {**os.environ, "SWIFTFORMER_QNN_CACHE": str(tmp_path / run / "cache"), "TMPDIR": str(tmp_path / run / "tmp"),
           "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "swiftformer_qnn.cli", "compile", str(model), "--fp16",
                             "--output-dir", str(tmp_path / run / "out")],
                            stdout=subprocess.DEVNULL, stderr=open(err, "w"), env=env, cwd=tmp_path)
    return proc, err, tmp_path / run


def _compile_started(proc: subprocess.Popen, run: Path) -> float:
    """When the compile stage handed its graph to the compile (the guarded graph it compiles from
    is written into its cache temp dir just before)."""
    where = run / "cache" / "stages" / "compile"
    while not (where.is_dir() and any((p / "model.guarded.onnx").is_file() for p in where.glob(".*tmp*"))):
        if proc.poll() is not None:
            pytest.fail(f"finished before the compile began: {(run / 'stderr.txt').read_text()[-1500:]}")
        time.sleep(0.02)
    return time.monotonic()


@pytest.mark.slow
def test_a_signal_stops_a_compile_while_qnn_compiles_in_native_code(tmp_path):
    """While QNN compiles (native code, holding the GIL) no signal handler of the compiling
    process runs: a graph that compiled for minutes ignored Ctrl-C and SIGTERM. The compile
    runs in a worker process, so SIGTERM and then Ctrl-C, each sent while the graph compiles,
    end the run long before the same compile, timed here to its end, would have."""
    model = _large_declared_graph(tmp_path / "large.onnx")
    control, err, run = _compile_cli(tmp_path, model, "control")
    began = _compile_started(control, run)
    assert control.wait(timeout=900) == 0, err.read_text()[-2000:]
    compile_s = time.monotonic() - began  # the compile's own time, on this machine, now

    for sig, code, said in ((signal.SIGTERM, 143, "Stopped by SIGTERM"), (signal.SIGINT, 130, "Interrupted (Ctrl-C)")):
        proc, err, run = _compile_cli(tmp_path, model, sig.name)
        began = _compile_started(proc, run)
        time.sleep(compile_s / 4)  # into QNN's graph finalization
        assert proc.poll() is None, err.read_text()[-2000:]
        sent = time.monotonic()
        proc.send_signal(sig)
        try:
            assert proc.wait(timeout=compile_s * 2) == code, err.read_text()[-2000:]
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{sig.name} was not acted on while QNN compiled")
        stopped_s = time.monotonic() - sent
        # Returned before the compile would have finished (it had compile_s * 3/4 still to go).
        assert stopped_s < compile_s / 2, (sig.name, stopped_s, compile_s)
        text = err.read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and said in lines[0] and "Traceback" not in text, text[-1500:]
        assert not (run / "out").exists()  # no output, not even a partial one
        assert [p.name for p in (run / "cache").rglob(".*")] == []  # no cache temp dir
        assert list((run / "tmp").glob("swiftformer-qnn-*")) == []  # the worker's temp dir went with it
        assert processes_naming(run) == {}  # and the worker itself
        assert model.is_file()  # the user's model stays


def test_a_held_signal_taken_by_another_thread_still_waits_for_the_block_to_end():
    """A signal sent to the process goes to any thread that does not block it (onnxruntime's,
    numpy's), and Python runs its handler in the main thread at once: blocking the main thread
    alone did not hold it."""
    import threading

    from swiftformer_qnn.core.output_dir import signals_held

    quiet = threading.Event()
    other = threading.Thread(target=quiet.wait, daemon=True)  # started unblocked: it takes the signal
    other.start()
    seen: list[str] = []
    old = signal.signal(signal.SIGTERM, lambda _s, _f: seen.append("handler"))
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the other thread has taken it by now
            seen.append("block end")
        time.sleep(0)  # a point where Python runs pending handlers
    finally:
        signal.signal(signal.SIGTERM, old)
        quiet.set()
    assert seen == ["block end", "handler"]
    assert signal.getsignal(signal.SIGTERM) is old


# --- the wait on a worker process (core.interrupt.wait_child) ------------------------------------


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Popen.wait's own checks where there is no pidfd")
def test_a_wait_on_a_worker_sleeps_until_it_ends_or_the_next_look_at_stopping():
    # Each time the waiting thread sleeps and wakes is a voluntary context switch of that thread.
    # Popen.wait(timeout) sleeps 0.5-50 ms at a time (about 45 times over this child's life); the
    # wait sleeps POLL_S at a time, and wakes when the child ends.
    import resource

    from swiftformer_qnn.core import interrupt

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    started, switches = time.monotonic(), resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    assert interrupt.wait_child(proc) == 0
    woke = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - switches
    assert woke <= (time.monotonic() - started) / interrupt.POLL_S + 3, woke


def test_a_wait_on_a_worker_already_reaped_gives_its_code():
    from swiftformer_qnn.core import interrupt

    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    assert interrupt.wait_child(proc) == 3


def test_a_wait_on_a_worker_killed_from_outside_gives_the_signal():
    import threading

    from swiftformer_qnn.core import interrupt

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killer = threading.Timer(0.3, proc.kill)
    killer.start()
    try:
        assert interrupt.wait_child(proc, timeout_s=30) == -signal.SIGKILL
    finally:
        killer.cancel()
        proc.kill()
        proc.wait()


def test_a_stop_ends_a_wait_on_a_sleeping_worker_and_kills_it():
    import threading

    from swiftformer_qnn.core import interrupt

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop = threading.Timer(0.3, interrupt.STOPPING.set)
    stop.start()
    try:
        with pytest.raises(interrupt.Stopped):
            interrupt.wait_child(proc)
    finally:
        stop.cancel()
        stop.join()
        interrupt.STOPPING.clear()
    assert proc.returncode == -signal.SIGKILL


def test_a_stop_ends_cpu_runs_between_samples():
    # cpu_qdq runs the quantized model beside the compile: a signal then must not wait for it.
    import numpy as np
    from onnx import TensorProto, helper

    from swiftformer_qnn.core import interrupt
    from swiftformer_qnn.measure.agreement import cpu_runs

    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", info[:1], info[1:]),
                              ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    samples = np.ones((8, 4), np.float32)
    ran = []
    interrupt.STOPPING.set()
    try:
        with pytest.raises(interrupt.Stopped):
            cpu_runs(model.SerializeToString(), samples, workers=1, each=ran.append)
    finally:
        interrupt.STOPPING.clear()
    assert ran == []
    assert len(cpu_runs(model.SerializeToString(), samples, workers=1)) == 8
