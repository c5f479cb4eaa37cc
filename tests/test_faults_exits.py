"""The fault battery, second round: exit codes by meaning (2 bad input or environment, 1 a failed
check, 0 a closed stdout pipe after the work is done), weights of the wrong kind, every wait
bounded (FIFOs), text from outside escaped for where it goes, one-line errors that point the
right way, and toolchains locked while in use and reinstalled when broken."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fault_checks import one_error_line
from gate_sim import synthetic_profile
from test_qnn_viewer_import import exports  # noqa: F401  (fixture)
from typer.testing import CliRunner

from swiftformer_qnn.cli import app

runner = CliRunner()
BLOCKS = {"stem": 300.0, "stage0.block0": 200.0, "stage3.block4": 500.0}


def _side(directory: Path, seed: int, scale: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(3):
        blocks = {b: t * scale * rng.lognormal(0, 0.01) for b, t in BLOCKS.items()}
        p = synthetic_profile(sum(blocks.values()) * rng.lognormal(0, 0.01, 20), blocks, job_id=f"j{seed}{i}")
        p.save(directory / f"job{i}" / "l1-w8a8.profile.json")
    return directory


def _cli(tmp_path: Path, *args: str, close_stdout: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100", "GITHUB_STEP_SUMMARY": ""}
    env.pop("GITHUB_STEP_SUMMARY")
    proc = subprocess.Popen([sys.executable, "-m", "swiftformer_qnn.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    if close_stdout:
        proc.stdout.close()  # the reader is gone before the command prints: `... | head -0`
        err = proc.stderr.read()
        proc.wait(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, b"", err)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("scale, code", [(1.0, 0), (1.5, 1)])
def test_a_closed_stdout_pipe_keeps_the_commands_own_exit_code(tmp_path, scale, code):
    """`gate latency ... | head -1` in CI: a pass stays 0 and a regression stays 1; the lost
    output is neither a failure nor a traceback."""
    base, cand = _side(tmp_path / "base", 1), _side(tmp_path / "cand", 2, scale)
    args = ("gate", "latency", "-b", str(base), "-c", str(cand))
    assert _cli(tmp_path, *args, close_stdout=False).returncode == code  # the same run, read to the end
    done = _cli(tmp_path, *args, close_stdout=True)
    assert done.returncode == code, done.stderr.decode()
    assert b"Traceback" not in done.stderr and b"Broken pipe" not in done.stderr and b"BrokenPipe" not in done.stderr


# --------------------------------------------------------------------------- 8. weights of the wrong kind


def _xs_state_dict_with(kind: str) -> tuple[dict, str]:
    import torch

    from swiftformer_qnn.model.swiftformer import build_model
    from swiftformer_qnn.model.variants import get_variant

    torch.manual_seed(0)
    sd = build_model(get_variant("xs")).state_dict()
    name = [k for k, v in sd.items() if v.is_floating_point()][2]
    v = sd[name]
    sd[name] = {"int": lambda: (v * 100).to(torch.int32), "bool": lambda: v > 0,
                "complex": lambda: v.to(torch.complex64), "meta": lambda: torch.empty(v.shape, device="meta"),
                "sparse": lambda: v.to_sparse()}[kind]()
    return sd, name


@pytest.mark.parametrize("kind, said", [("int", "an int32 tensor where the model holds float weights"),
                                        ("bool", "a bool tensor"), ("complex", "a complex tensor"),
                                        ("meta", "a meta tensor"), ("sparse", "a sparse tensor")])
def test_weights_of_the_wrong_kind_are_one_line_naming_the_tensor(tmp_path, kind, said):
    import torch

    sd, name = _xs_state_dict_with(kind)
    path = tmp_path / f"{kind}.pth"
    torch.save(sd, path)
    line = one_error_line(runner.invoke(app, ["export", "--variant", "xs", "--weights", str(path), "--until", "onnx",
                                              "--resolution", "64", "--output-dir", str(tmp_path / "o")]), 2)
    assert name in line and said in line
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- 10. bad input or environment: exit 2


def test_external_data_outside_the_model_folder_is_bad_input(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "64")):
        e = w.external_data.add()
        e.key, e.value = k, v
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    (tmp_path / "m").mkdir()
    model = tmp_path / "m" / "model.onnx"
    model.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    line = one_error_line(runner.invoke(app, ["compile", str(model), "--fp16", "--output-dir", str(tmp_path / "o")]), 2)
    assert "'../secret.bin', outside the model's folder" in line
    assert not (tmp_path / "o").exists()


def _hostile_profile_files(tmp_path: Path) -> dict[str, Path]:
    """Profile files in the public formats with one hostile detail each."""
    deep = "[" * 100_000 + "]" * 100_000
    digits = "1" + "0" * 5000
    header = "Msg Timestamp, Message, Time, Unit of Measurement, Timing Source, Event Level, Event Identifier\n"
    files = {
        "aihub-deep.json": '{"execution_summary": {"estimated_inference_time": 1000, "x": ' + deep + '}, '
                           '"execution_detail": []}',
        "aihub-digits.json": '{"execution_summary": {"estimated_inference_time": ' + digits + '}, "execution_detail": []}',
        "viewer-digits.json": '{"messages": [{"method": "BACKEND_EXECUTE", "profilingEvents": [{"identifier": '
                              '"QNN (execute) time", "unit": "US", "value": ' + digits + '}]}]}',
        "viewer-zero.json": '{"messages": [{"method": "BACKEND_EXECUTE", "profilingEvents": [{"identifier": '
                            '"QNN (execute) time", "unit": "US", "value": 0}]}]}',
        "viewer-zero.csv": header + "1,EXECUTE,0,US,BACKEND,ROOT,QNN (execute) time\n",
        "viewer-newline.csv": header + "1,EXECUTE,100,US,BACKEND,ROOT,QNN (execute) time\n"
                              "2,EXECUTE,50,CYCLES,BACKEND,ROOT,Accelerator (execute) time (cycles)\n"
                              '3,EXECUTE,50,CYCLES,BACKEND,SUB-EVENT,"/stem/conv1/Conv\n_token_1:OpId_3 (cycles)"\n',
    }
    out = {}
    for name, text in files.items():
        out[name] = tmp_path / name
        out[name].write_text(text)
    return out


@pytest.mark.parametrize("name, said", [
    ("aihub-deep.json", "nested too deeply"), ("aihub-digits.json", "more than 4300 digits"),
    ("viewer-digits.json", "more than 4300 digits"), ("viewer-zero.json", "is 0 us"), ("viewer-zero.csv", "is 0 us"),
    ("viewer-newline.csv", "line break"),
])
def test_hostile_profile_files_are_bad_input_not_a_bug(exports, tmp_path, name, said):  # noqa: F811
    path = _hostile_profile_files(tmp_path)[name]
    res = runner.invoke(app, ["profile", "import", str(path), "--from", str(exports[("l1", True)]),
                              "--device", "Samsung Galaxy S23 Ultra", "--out", str(tmp_path / "out")])
    line = one_error_line(res, 2)
    assert said in line and "set_int_max_str_digits" not in line
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def _limited(tmp_path: Path, limit: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTFORMER_QNN_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    return subprocess.run(["bash", "-c", f'{limit} && exec "$@"', "limited", sys.executable, "-m", "swiftformer_qnn.cli",
                           *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_a_file_size_limit_is_the_environment_exit_2(tmp_path):
    done = _limited(tmp_path, "ulimit -f 200", "export", "--variant", "encoder", "--resolution", "16",
                    "--calibration-count", "4", "--heldout-count", "2", "--until", "onnx", "--output-dir", "o/enc")
    assert done.returncode == 2, done.stderr
    assert "ulimit -f" in done.stderr and "Traceback" not in done.stderr and "bug" not in done.stderr
    assert not (tmp_path / "o" / "enc").exists()


def test_a_memory_limit_is_the_environment_exit_2(tmp_path):
    """Under `ulimit -v`, torch's native libraries cannot even be mapped: an ImportError that says so."""
    done = _limited(tmp_path, "ulimit -v 600000", "export", "--variant", "xs", "--calibration-count", "4",
                    "--heldout-count", "2", "--until", "onnx", "--output-dir", "o/xs")
    assert done.returncode == 2, done.stderr
    assert "Ran out of memory" in done.stderr and "Traceback" not in done.stderr and "bug" not in done.stderr


# --------------------------------------------------------------------------- 11. outside text escaped for its format

HOSTILE_DEVICE = "Galaxy <img src=x onerror=alert(1)> **S23** [x](javascript:1)\n# injected | cell\x1b]0;pwned\x07\x1b[2J"


def _hostile_side(directory: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(2):
        p = synthetic_profile(1000 * rng.lognormal(0, 0.01, 20), BLOCKS, job_id=f"h{seed}{i}", device=HOSTILE_DEVICE)
        p.save(directory / f"job{i}" / "l1-w8a8.profile.json")
    return directory


def _markdown_is_inert(md: str) -> None:
    import re

    for markup in (r"<img", r"\*\*S23", r"\[x\]\("):  # each only backslash-escaped, so shown as text
        assert not re.search(r"(?<!\\)" + markup, md), markup
    assert "\x1b" not in md and "\x07" not in md
    assert not any(line.startswith("# injected") for line in md.splitlines())
    for line in md.splitlines():  # every table row keeps its column count
        if line.startswith("|") and "injected" in line:
            assert "\\| cell" in line


def test_names_from_profiles_reach_report_md_as_text(tmp_path):
    side = _hostile_side(tmp_path / "p", 1)
    res = runner.invoke(app, ["report", str(side), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output + res.stderr
    md = (tmp_path / "r" / "report.md").read_text()
    assert "injected" in md  # the name is there, as text
    _markdown_is_inert(md)


def test_names_from_profiles_reach_charts_as_plain_text(tmp_path):
    """Charts draw outside names as text: no matplotlib math (a name with `$\\frac$` made savefig raise), no
    control character handed to the font (each drew a warning and a missing glyph)."""
    import warnings

    rng = np.random.default_rng(3)
    for i in range(2):
        p = synthetic_profile(1000 * rng.lognormal(0, 0.01, 20), BLOCKS, job_id=f"m{i}",
                              device="S23 $x_{1}$ $\\frac$ cost $5 \x1b[2J")
        p.save(tmp_path / "p" / f"job{i}" / "l1-w8a8.profile.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph is a UserWarning
        res = runner.invoke(app, ["report", str(tmp_path / "p"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output + res.stderr
    assert list((tmp_path / "r").glob("*.png"))


def test_names_from_profiles_reach_gate_md_as_text(tmp_path):
    base, cand = _hostile_side(tmp_path / "b", 1), _hostile_side(tmp_path / "c", 2)
    res = runner.invoke(app, ["gate", "latency", "-b", str(base), "-c", str(cand), "--markdown", str(tmp_path / "g.md")],
                        env={"GITHUB_STEP_SUMMARY": None})
    assert res.exit_code in (0, 1), res.output + res.stderr
    md = (tmp_path / "g.md").read_text()
    assert "injected" in md
    _markdown_is_inert(md)
    assert "\x1b" not in res.stdout + res.stderr


def test_escape_sequences_from_outside_never_reach_the_terminal(exports, tmp_path):  # noqa: F811
    """A file name (as a server or a phone might return one) in an error, a device name in a summary."""
    line = one_error_line(runner.invoke(app, ["profile", "import", str(tmp_path / "x\x1b]0;pwned\x07\x1b[2J.csv"),
                                              "--from", str(exports[("l1", True)]), "--device", "S23"]), 2)
    assert "\x1b" not in line and "\x07" not in line and "x.csv does not exist" in line
    from qnn_viewer_formats import device_inferences, write_csv
    from test_qnn_viewer_import import GRAPH

    path = tmp_path / "p.csv"
    path.write_text(write_csv(GRAPH, device_inferences("l1", 2)))
    res = runner.invoke(app, ["profile", "import", str(path), "--from", str(exports[("l1", True)]),
                              "--device", "S23 \x1b[2J\x1b]0;pwned\x07[red]x[/red]", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output + res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout and "[red]x[/red]" in res.stdout


# --------------------------------------------------------------------------- 6. every wait bounded: FIFOs


@pytest.mark.parametrize("command", ["report", "gate"])
def test_a_fifo_named_like_a_profile_never_blocks_a_folder_read(tmp_path, command):
    side = _side(tmp_path / "p", 1)
    os.mkfifo(side / "job0" / "trap.profile.json")  # nobody ever writes to it
    if command == "report":
        args = ("report", str(side), "--skip-invalid", "--out", str(tmp_path / "r"))
    else:
        args = ("gate", "latency", "-b", str(side), "-c", str(_side(tmp_path / "c", 2)))
    try:
        done = _cli(tmp_path, *args, close_stdout=False)  # a blocked read fails this by its timeout
    except subprocess.TimeoutExpired:
        pytest.fail("blocked on the FIFO")
    assert done.returncode == 0, done.stderr.decode()


@pytest.mark.parametrize("make, said", [(lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a file"),
                                        (None, "is a device, not a file")])
def test_a_fifo_or_a_device_given_as_a_file_is_named_as_what_it_is(exports, tmp_path, make, said):  # noqa: F811
    path = tmp_path / "p.csv"
    if make is None:
        path = Path("/dev/zero")
    else:
        make(path)
    line = one_error_line(runner.invoke(app, ["profile", "import", str(path), "--from", str(exports[("l1", True)]),
                                              "--device", "S23"]), 2)
    assert said in line and "does not exist" not in line
    line = one_error_line(runner.invoke(app, ["gate", "latency", "-b", str(path), "-c", str(path)]), 2)
    assert said in line


# --------------------------------------------------------------------------- 12. one-line errors that point the right way


def test_a_path_through_a_file_or_a_symlink_loop_says_so_not_file_exists(tmp_path):
    (tmp_path / "afile").write_text("x")
    os.symlink("loop", tmp_path / "loop")
    for out, said in (("afile/enc", "afile is a file, not a folder"), ("loop/enc", "loop is a symbolic link loop")):
        line = one_error_line(runner.invoke(app, ["export", "--variant", "encoder", "--resolution", "16", "--until",
                                                  "onnx", "--output-dir", str(tmp_path / out)]), 2)
        assert said in line and "File exists" not in line


def test_gate_accept_names_its_own_option_for_the_place(tmp_path):
    side = _side(tmp_path / "p", 1)
    (tmp_path / "taken").write_text("a file where the baseline would go")
    line = one_error_line(runner.invoke(app, ["gate", "accept", "latency", "-c", str(side), "-b",
                                              str(tmp_path / "taken" / "base")]), 2)
    assert "taken is a file, not a folder" in line and "--output-dir" not in line and "--baseline" in line


def test_ops_of_another_model_on_import_name_no_option_import_lacks(exports, tmp_path):  # noqa: F811
    from qnn_viewer_formats import device_inferences, write_csv
    from test_qnn_viewer_import import GRAPH

    path = tmp_path / "l1.csv"
    path.write_text(write_csv(GRAPH, device_inferences("l1", 1)))
    line = one_error_line(runner.invoke(app, ["profile", "import", str(path), "--from", str(exports[("encoder", False)]),
                                              "--device", "S23"]), 2)
    assert "does not have" in line and "--variant" not in line


def test_compiling_an_already_compiled_model_does_not_ask_for_fp16(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("EPContext", ["x"], ["y"], name="ctx", domain="com.microsoft", embed_mode=0,
                            ep_cache_context="model.ctx_qnn.bin", source="QNN")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = tmp_path / "model.ctx.onnx"
    model.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                              helper.make_opsetid("com.microsoft", 1)]).SerializeToString())
    line = one_error_line(runner.invoke(app, ["compile", str(model), "--output-dir", str(tmp_path / "o")]), 2)
    assert "already compiled" in line and "--fp16" not in line


@pytest.mark.parametrize("filename, cache_full, said", [
    (None, True, "stage cache's disk"),  # a write() into the cache: no file named, the cache's disk is full
    (None, False, "where the output goes"),
    ("cache", False, "disk of the output or of the stage cache"),  # maybe a copy from the cache into a full output
    ("cache", True, "stage cache's disk"),
])
def test_a_full_disk_hint_names_the_disk_that_is_full(tmp_path, monkeypatch, filename, cache_full, said):
    import errno as errno_

    from swiftformer_qnn.cli import _app

    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_app, "_free_bytes", lambda path: 1 << 20 if cache_full else 1 << 40)
    name = str(tmp_path / "cache" / "stages" / "x") if filename == "cache" else None
    exc = OSError(errno_.ENOSPC, "No space left on device", name)
    assert said in _app._environment_hint(exc)


# --------------------------------------------------------------------------- 7. a broken toolchain is reinstalled


def test_a_file_deleted_inside_a_toolchain_makes_it_broken_and_qnn_reinstalls_it(tmp_path):
    """A module deleted from a toolchain's environment: the toolchain is broken (naming the file),
    `--qnn` (ensure_toolchains) reinstalls it instead of running a worker that fails to import."""
    from test_toolchains import _RecordingInstaller
    from toolchain_fakes import make_fake_toolchain

    from swiftformer_qnn.core.errors import ToolchainError
    from swiftformer_qnn.toolchains import (
        ToolchainState,
        ensure_toolchains,
        get_toolchain_spec,
        inspect_toolchain,
    )

    spec = get_toolchain_spec("2.49")
    root = tmp_path / "toolchains"
    d = make_fake_toolchain(root, spec)
    (site,) = (d / "env" / "lib").glob("python*/site-packages")
    module = site / "onnxruntime" / "capi" / "onnxruntime_pybind11_state.py"
    module.parent.mkdir(parents=True)
    module.write_text("# the module the worker imports\n")
    (site / f"onnxruntime-{spec.onnxruntime}.dist-info" / "RECORD").write_text(
        "onnxruntime/capi/onnxruntime_pybind11_state.py,sha256=abc,33\n"
        f"onnxruntime-{spec.onnxruntime}.dist-info/RECORD,,\n"
        "onnxruntime/capi/__pycache__/x.cpython-311.pyc,,\n")
    assert inspect_toolchain(spec, root).state is ToolchainState.READY
    module.unlink()
    status = inspect_toolchain(spec, root)
    assert status.state is ToolchainState.BROKEN and "onnxruntime_pybind11_state.py" in status.detail
    installer = _RecordingInstaller()
    with pytest.raises(ToolchainError, match="Disk full"):  # the stand-in installer fails after noting the call
        ensure_toolchains([spec], root=root, installer=installer)
    assert installer.made == [spec.name]


def test_a_toolchain_in_use_by_a_compile_is_not_removed(tmp_path, monkeypatch):
    """`toolchains remove 2.49` while a worker compiles with 2.49: refused, the toolchain intact."""
    from toolchain_fakes import make_fake_toolchain

    from swiftformer_qnn.core.errors import ToolchainError
    from swiftformer_qnn.htp import sweep
    from swiftformer_qnn.htp.record import CompileJob, CompileSpec
    from swiftformer_qnn.htp.session import HtpTarget
    from swiftformer_qnn.toolchains import get_toolchain_spec, inspect_toolchain, remove_toolchain

    spec = get_toolchain_spec("2.49")
    root = tmp_path / "toolchains"
    d = make_fake_toolchain(root, spec)
    refused: list[str] = []

    class WorkerRunning:  # while the worker runs, someone removes its toolchain
        args, returncode = [], 1

        def __init__(self, *_args, **_kwargs):
            try:
                remove_toolchain(spec, root)
            except ToolchainError as exc:
                refused.append(exc.one_line())

        def wait(self, _timeout=None):
            return self.returncode

    monkeypatch.setattr(sweep.subprocess, "Popen", WorkerRunning)
    job = sweep._Job(spec, inspect_toolchain(spec, root))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(sweep.VersionFailure):  # the stand-in worker wrote no result
        sweep.run_worker(job, work, CompileJob(spec=CompileSpec(model=tmp_path / "m.onnx", out_dir=work,
                                                                        target=HtpTarget())), tmp_path, 60)
    assert refused and "in use by a running compile" in refused[0]
    assert d.is_dir() and inspect_toolchain(spec, root).usable
    assert remove_toolchain(spec, root) == d and not d.exists()  # once the run has ended
