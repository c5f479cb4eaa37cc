"""The HTP emulator in worker processes (`htp.emulate`, which verify runs): the same outputs as a
session in this process, bit for bit; a failure raised as itself, a death and a stop leave no
process and no folder behind. Workers started ahead (`htp.workers.start_ahead`): a dead one is
replaced, and those nothing took end with their folders."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fault_checks import processes_naming
from qdq_fixtures import input_name, make_qdq_model

from swiftformer_qnn.core import interrupt
from swiftformer_qnn.core.errors import ToolchainError
from swiftformer_qnn.htp.emulate import core_shares, emulate_samples
from swiftformer_qnn.htp.session import HtpTarget, htp_session


@pytest.fixture(scope="module")
def block_binary(tmp_path_factory) -> Path:
    """The standalone encoder block at 32 px, w8a8, compiled to an EP-context model."""
    d = tmp_path_factory.mktemp("block-binary")
    qdq = make_qdq_model("encoder", 32, d)
    htp_session(qdq, HtpTarget(), context_out=d / "model.ctx.onnx")
    return d / "model.ctx.onnx"


def _samples(ctx: Path, n: int) -> list[np.ndarray]:
    import onnx

    shape = [d.dim_value for d in onnx.load(str(ctx)).graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(7)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Iterator[Path]:
    """The workers' folders go here, so a test can see that none is left."""
    from swiftformer_qnn.htp.workers import discard_ahead

    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    yield d
    discard_ahead()  # none started ahead outlives its test


def _emulating_in_a_thread(ctx: Path, samples: int) -> tuple[threading.Thread, list[BaseException]]:
    """`emulate_samples` over `samples` inputs in two workers, from a thread of its own: the
    test's thread kills or stops them meanwhile. What it raises lands in the returned list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            emulate_samples(ctx, HtpTarget(), _samples(ctx, samples), workers=2)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _wait_for_workers(folder: Path, count: int) -> dict[int, str]:
    deadline = time.monotonic() + 60
    while len(alive := processes_naming(folder)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(alive) >= count, f"{len(alive)} worker(s) started"
    return alive


def test_the_workers_compute_what_one_session_computes(block_binary, private_tmp):
    samples = _samples(block_binary, 3)
    session = htp_session(block_binary, HtpTarget())
    feed = input_name("encoder")
    assert session.get_inputs()[0].name == feed
    expected = [session.run(None, {feed: x})[0] for x in samples]
    del session

    got = emulate_samples(block_binary, HtpTarget(), samples, workers=2)  # dealt 2 + 1
    assert len(got) == 3 and all(len(values) == 1 for values in got)
    for (value,), want in zip(got, expected, strict=True):
        assert value.dtype == want.dtype and np.array_equal(value, want)
    assert list(private_tmp.iterdir()) == []


def test_core_shares_deal_the_cores_so_no_two_workers_share_one():
    assert core_shares([0, 1], 2) == [[0], [1]]
    assert core_shares([2, 5, 6, 7], 2) == [[2, 6], [5, 7]]  # the cores this process may use
    assert core_shares([0, 1, 2], 3) == [[0], [1], [2]]
    assert core_shares([0, 1], 3) is None  # more workers than cores: the OS shares them out
    assert core_shares([0, 1, 2, 3], 1) is None  # a single worker keeps every core
    assert core_shares([0], 2) is None


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to share out")
def test_workers_that_share_the_cores_each_run_on_their_own(block_binary, private_tmp, monkeypatch):
    from swiftformer_qnn.htp.workers import WorkerProcess

    reported: list[dict] = []
    outcome = WorkerProcess.outcome

    def recorded(self, code, what):
        reported.append(result := outcome(self, code, what))
        return result

    monkeypatch.setattr(WorkerProcess, "outcome", recorded)
    cores = sorted(os.sched_getaffinity(0))
    emulate_samples(block_binary, HtpTarget(), _samples(block_binary, 2), workers=2)
    # The cores the threads each worker's session started (onnxruntime's, the emulator's) were
    # allowed to run on, as the kernel told the worker.
    assert [r["session_threads_cpus"] for r in reported] == core_shares(cores, 2)
    assert not set(reported[0]["session_threads_cpus"]) & set(reported[1]["session_threads_cpus"])

    reported.clear()
    emulate_samples(block_binary, HtpTarget(), _samples(block_binary, 2), workers=1)
    assert [r["session_threads_cpus"] for r in reported] == [cores]


@pytest.fixture(scope="module")
def tapped_binary(tmp_path_factory) -> tuple[Path, str]:
    """The block at 32 px with a tensor from its middle as a second output (as the mixed search
    taps a unit's output), compiled; and that output's name."""
    from swiftformer_qnn.pipeline.mixed import tapped_model

    d = tmp_path_factory.mktemp("tapped-binary")
    qdq = make_qdq_model("encoder", 32, d)
    import onnx

    model = onnx.load(str(qdq))
    quantized = [n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"
                 and n.input[0] not in {i.name for i in model.graph.input}]
    (name,) = tapped_model(qdq, [quantized[len(quantized) // 2]], d / "tapped.onnx")
    htp_session(d / "tapped.onnx", HtpTarget(), context_out=d / "model.ctx.onnx")
    return d / "model.ctx.onnx", name


def test_extra_outputs_come_in_the_order_asked_and_one_worker_serves_all(tapped_binary, private_tmp):
    ctx, tap = tapped_binary
    samples = _samples(ctx, 3)
    session = htp_session(ctx, HtpTarget())
    first = session.get_outputs()[0].name
    assert tap != first
    expected = [session.run([first, tap], {session.get_inputs()[0].name: x}) for x in samples]
    del session

    got = emulate_samples(ctx, HtpTarget(), samples, extra_outputs=[tap], workers=1)
    for values, want in zip(got, expected, strict=True):
        assert len(values) == 2
        assert values[0].shape != values[1].shape or not np.array_equal(values[0], values[1])  # told apart
        assert all(np.array_equal(v, w) for v, w in zip(values, want, strict=True))
    assert [len(v) for v in emulate_samples(ctx, HtpTarget(), samples[:2])] == [1, 1]  # the first only
    assert emulate_samples(ctx, HtpTarget(), []) == []
    assert list(private_tmp.iterdir()) == []


def test_a_failure_in_a_worker_is_raised_as_itself(tmp_path, private_tmp):
    not_a_model = tmp_path / "model.ctx.onnx"
    not_a_model.write_bytes(b"not an onnx model")
    with pytest.raises(ToolchainError, match="could not create an HTP session for model.ctx.onnx"):
        emulate_samples(not_a_model, HtpTarget(), [np.zeros((1, 4), np.float32)] * 2)
    assert list(private_tmp.iterdir()) == []
    assert processes_naming(private_tmp) == {}


def test_a_sample_the_binary_refuses_is_a_one_line_error(block_binary, private_tmp):
    with pytest.raises(RuntimeError, match=r"in the emulate worker: .+") as info:
        emulate_samples(block_binary, HtpTarget(), [np.zeros((1, 4), np.float32)])
    assert "\n" not in str(info.value)
    assert list(private_tmp.iterdir()) == []


def test_a_worker_that_dies_is_named_with_its_signal(block_binary, private_tmp):
    import os
    import signal

    thread, errors = _emulating_in_a_thread(block_binary, 2000)
    os.kill(min(_wait_for_workers(private_tmp, 1)), signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive()
    (error,) = errors
    assert isinstance(error, ToolchainError) and "died (SIGKILL" in error.message, error
    assert list(private_tmp.iterdir()) == []
    assert processes_naming(private_tmp) == {}


def test_a_stop_kills_every_worker(block_binary, private_tmp):
    thread, errors = _emulating_in_a_thread(block_binary, 2000)
    _wait_for_workers(private_tmp, 2)
    try:
        interrupt.STOPPING.set()
        thread.join(30)
    finally:
        interrupt.STOPPING.clear()
    assert not thread.is_alive()
    (error,) = errors
    assert isinstance(error, interrupt.Stopped)
    assert list(private_tmp.iterdir()) == []
    assert processes_naming(private_tmp) == {}


def test_a_worker_started_while_signals_are_held_still_dies_of_sigterm(private_tmp):
    """The parent holds Ctrl-C and SIGTERM while it starts a worker (the temp dir and the process
    exist together or not at all); the worker must not keep that mask, or one whose parent was
    killed outright would run its whole job."""
    import os
    import signal

    from swiftformer_qnn.core.output_dir import signals_held
    from swiftformer_qnn.htp.workers import WorkerProcess

    with signals_held():
        worker = WorkerProcess("emulate")
    try:
        held = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGHUP - 1))
        status = Path(f"/proc/{worker.proc.pid}/status")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the worker's main() has run its first lines
            blocked = next(int(ln.split()[1], 16) for ln in status.read_text().splitlines()
                           if ln.startswith("SigBlk:"))
            if not blocked & held:
                break
            time.sleep(0.05)
        os.kill(worker.proc.pid, signal.SIGTERM)
        assert worker.proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        worker.close()
    assert list(private_tmp.iterdir()) == []


def test_an_os_error_in_a_worker_is_the_machines_not_a_bug(private_tmp):
    import json

    from swiftformer_qnn.htp.workers import WorkerProcess

    worker = WorkerProcess("emulate")
    try:
        worker.close()  # its job never comes: what it reports is written here
        worker.dir.mkdir()
        worker.result.write_text(json.dumps({"status": "failed", "error_type": "PermissionError",
                                             "message": "[Errno 13] Permission denied: 'outputs.npz'"}))
        with pytest.raises(ToolchainError, match=r"could not read or write its files \(PermissionError") as info:
            worker.outcome(4, "HTP emulator run of model.ctx.onnx")
        assert "TMPDIR" in info.value.one_line()
        worker.result.write_text(json.dumps({"status": "failed", "error_type": "KeyError", "message": "'x'"}))
        with pytest.raises(RuntimeError, match="KeyError in the emulate worker"):
            worker.outcome(4, "HTP emulator run of model.ctx.onnx")
    finally:
        worker.close()
    assert list(private_tmp.iterdir()) == []


def test_a_signal_held_while_a_worker_starts_leaves_no_worker_and_no_folder(private_tmp, monkeypatch):
    """A SIGTERM that arrives while the worker is being started is delivered as the held block
    ends, inside the constructor: the caller never gets the object to close, so nothing of it
    may stay behind."""
    import os
    import signal
    import subprocess

    from swiftformer_qnn.htp import workers

    class Terminated(Exception):
        pass

    def handler(_signum, _frame):
        raise Terminated

    real_popen = subprocess.Popen
    started: list[int] = []

    def popen_then_sigterm(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        started.append(proc.pid)
        os.kill(os.getpid(), signal.SIGTERM)  # held: delivered when the start-up block ends
        time.sleep(0.05)  # long enough for another thread to take it (CI once lost the worker so)
        return proc

    # A thread that does not block SIGTERM, as onnxruntime's and numpy's: the kernel gives it
    # the signal, and Python would run the handler in this thread inside the block.
    quiet = threading.Event()
    threading.Thread(target=quiet.wait, daemon=True).start()
    monkeypatch.setattr(workers.subprocess, "Popen", popen_then_sigterm)
    old = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(Terminated):
            workers.WorkerProcess("emulate")
    finally:
        signal.signal(signal.SIGTERM, old)
        quiet.set()
    assert len(started) == 1
    assert list(private_tmp.iterdir()) == []
    assert processes_naming(private_tmp) == {}


def test_a_compile_that_runs_its_graph_once_gives_every_output_or_says_why_not(block_binary, tmp_path,
                                                                                 private_tmp):
    """`compile_in_worker(run_on=...)`, which the per-tensor localization uses: the outputs of the
    session that compiled, equal to the binary's; a feed the graph refuses is one line."""
    from swiftformer_qnn.htp.compile import compile_in_worker
    from swiftformer_qnn.htp.record import HTP_OUTPUTS, CompileSpec

    qdq = block_binary.parent / "encoder_32_w8a8.qdq.onnx"
    sample = _samples(block_binary, 1)[0]
    np.savez(tmp_path / "feed.npz", **{input_name("encoder"): sample})
    compile_in_worker(CompileSpec(model=qdq, out_dir=tmp_path / "c", target=HtpTarget()), run_on=tmp_path / "feed.npz")
    with np.load(tmp_path / "c" / HTP_OUTPUTS) as outputs:
        (name,) = outputs.files
        (want,) = emulate_samples(block_binary, HtpTarget(), [sample])
        assert np.array_equal(outputs[name], want[0])

    np.savez(tmp_path / "bad.npz", **{input_name("encoder"): np.zeros((1, 4), np.float32)})
    with pytest.raises(ToolchainError, match=r"could not run encoder_32_w8a8.qdq.onnx once compiled: \w+") as info:
        compile_in_worker(CompileSpec(model=qdq, out_dir=tmp_path / "d", target=HtpTarget()), run_on=tmp_path / "bad.npz")
    assert "\n" not in info.value.one_line()
    assert [p.name for p in (tmp_path / "d").iterdir()] == []  # the compile's files and its run's went
    assert list(private_tmp.iterdir()) == [] and processes_naming(private_tmp) == {}


# --- workers started ahead (htp.workers.start_ahead / take / discard_ahead: the compile's) ----


def test_take_hands_out_the_worker_started_ahead_then_starts_new_ones(private_tmp):
    from swiftformer_qnn.htp import workers

    workers.start_ahead("compile")
    waiting = workers._ahead["compile"]
    workers.start_ahead("compile")  # already one waiting: no second
    assert workers._ahead["compile"] is waiting
    (pid,) = _wait_for_workers(private_tmp, 1)
    first, second = workers.take("compile"), workers.take("compile")
    try:
        assert first.proc.pid == pid and second.proc.pid != pid and second.alive()
        assert "compile" not in workers._ahead
    finally:
        first.close()
        second.close()
    assert list(private_tmp.iterdir()) == []


def test_a_worker_that_died_waiting_is_replaced_and_its_folder_goes(private_tmp):
    from swiftformer_qnn.htp import workers

    workers.start_ahead("compile")
    (pid,) = _wait_for_workers(private_tmp, 1)
    dead_dir = workers._ahead["compile"].dir
    workers._ahead["compile"].proc.kill()
    workers._ahead["compile"].proc.wait()
    worker = workers.take("compile")
    try:
        assert worker.alive() and worker.proc.pid != pid
        assert not dead_dir.exists()
    finally:
        worker.close()
    workers.start_ahead("compile")  # the same for one that died before a second start_ahead
    dead = workers._ahead["compile"]
    dead.proc.kill()
    dead.proc.wait()
    workers.start_ahead("compile")
    assert workers._ahead["compile"] is not dead and workers._ahead["compile"].alive()
    assert not dead.dir.exists()
    workers.discard_ahead("compile")
    assert list(private_tmp.iterdir()) == []


def test_discarding_ends_what_nothing_took_and_only_of_that_command(private_tmp):
    from swiftformer_qnn.htp import workers

    workers.start_ahead("emulate")
    workers.start_ahead("compile")
    _wait_for_workers(private_tmp, 2)
    workers.discard_ahead("emulate")
    assert workers._ahead["compile"].command == "compile"
    assert "emulate" not in workers._ahead
    alive = processes_naming(private_tmp)
    assert len(alive) == 1 and " compile " in next(iter(alive.values()))
    workers.discard_ahead()
    deadline = time.monotonic() + 10
    while processes_naming(private_tmp) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert processes_naming(private_tmp) == {}
    assert list(private_tmp.iterdir()) == []
