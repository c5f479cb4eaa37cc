"""The HTP emulator in worker processes (`htp.emulate`, which verify runs): the same outputs as a
session in this process, bit for bit; a failure raised as itself, a death and a stop leave no
process and no folder behind."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fault_checks import processes_naming
from qdq_fixtures import input_name, make_qdq_model

from swiftformer_qnn.core import interrupt
from swiftformer_qnn.core.errors import ToolchainError
from swiftformer_qnn.htp.emulate import emulate_samples
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
def private_tmp(tmp_path, monkeypatch) -> Path:
    """The workers' folders go here, so a test can see that none is left."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


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


def test_extra_outputs_by_name_and_a_single_worker(block_binary, private_tmp):
    import onnx

    name = onnx.load(str(block_binary)).graph.output[0].name
    samples = _samples(block_binary, 2)
    by_name = emulate_samples(block_binary, HtpTarget(), samples, extra_outputs=[name], workers=1)
    default = emulate_samples(block_binary, HtpTarget(), samples)
    for (a, b), (c,) in zip(by_name, default, strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, c)
    assert emulate_samples(block_binary, HtpTarget(), []) == []


def test_a_failure_in_a_worker_is_raised_as_itself(tmp_path, private_tmp):
    not_a_model = tmp_path / "model.ctx.onnx"
    not_a_model.write_bytes(b"not an onnx model")
    with pytest.raises(ToolchainError):
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
