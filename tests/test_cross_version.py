"""Cross-version compiles: the pure comparison on synthetic data, failure reporting with fake
workers beside a real compile, and (slow) real compiles with every QNN toolchain."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from qdq_fixtures import make_qdq_model
from toolchain_fakes import CRASHING_WORKER, REJECTING_WORKER, make_fake_toolchain, user_toolchains_root
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.cli.versions_table import render_markdown, table_rows
from swiftformer_qnn.core.atomic import sha256_file
from swiftformer_qnn.core.errors import ToolchainError, UsageError
from swiftformer_qnn.htp.record import (
    COMPILE_FAILURE,
    COMPILE_RECORD,
    CompileRecord,
    read_compile_failure,
    read_compile_record,
    traced_op_names,
)
from swiftformer_qnn.htp.sweep import (
    CrossVersionReport,
    VersionResult,
    compile_across_versions,
    consecutive_diffs,
    diff_versions,
    fidelity,
    read_report,
)
from swiftformer_qnn.measure.agreement import Agreement
from swiftformer_qnn.pipeline.artifacts import StageCache
from swiftformer_qnn.toolchains import TOOLCHAINS, TOOLCHAINS_ENV, get_toolchain_spec, install_toolchain

# --- pure comparison --------------------------------------------------------------------------


def test_fidelity_of_identical_outputs():
    a = [np.array([[1.0, -2.0, 3.0]], dtype=np.float32), np.array([0.5])]
    f = fidelity(a, [x.copy() for x in a])
    assert f.max_abs_diff == 0.0 and f.cosine_min == pytest.approx(1.0) and f.sqnr_db is None


def test_fidelity_numbers():
    f = fidelity([np.array([3.0, 4.0])], [np.array([3.0, 4.5])])
    assert f.max_abs_diff == pytest.approx(0.5)
    assert f.sqnr_db == pytest.approx(10 * math.log10(25 / 0.25))  # 20 dB
    assert f.cosine_min == pytest.approx((9 + 18) / (5 * math.hypot(3, 4.5)))


def test_fidelity_rejects_mismatched_outputs():
    with pytest.raises(ValueError):
        fidelity([np.zeros(3)], [np.zeros(3), np.zeros(1)])
    with pytest.raises(ValueError):
        fidelity([np.zeros(3)], [np.zeros(4)])


def test_zero_reference_sqnr_survives_json_distinct_from_identical():
    f = fidelity([np.zeros(4)], [np.full(4, 0.1)])
    assert f.sqnr_db is None and not f.exact and f.cosine_min == 0.0
    again = Agreement.model_validate_json(f.model_dump_json())
    assert again == f
    same = fidelity([np.ones(4)], [np.ones(4)])
    assert same.sqnr_db is None and same.exact and Agreement.model_validate_json(same.model_dump_json()).exact


def test_op_type_changes_are_listed_biggest_first():
    before = {"Conv2d": 57, "Gelu": 26, "Dequantize": 5, "L2Norm": 8}
    after = {"Conv2d": 57, "Gelu": 26, "Dequantize": 1, "ElementWiseMultiply": 1, "L2Norm": 8}
    diff = diff_versions(_version("2.49", types=before), _version("2.50", types=after))
    assert [(c.op_type, c.before, c.after) for c in diff.op_type_changes] == [
        ("Dequantize", 5, 1), ("ElementWiseMultiply", 0, 1)]
    assert diff_versions(_version("2.49", types=before), _version("2.50", types=dict(before))).op_type_changes == []


def _version(v: str, status="ok", types=None, **kw) -> VersionResult:
    """A version's result; `types=None` is a QNN release without an op trace (2.47)."""
    spec = get_toolchain_spec(v)
    if status != "ok":
        return VersionResult(
            qnn_version=spec.qnn_version, onnxruntime_qnn=spec.onnxruntime_qnn, onnxruntime=spec.onnxruntime,
            status=status, error=kw.pop("error", "boom"),
        )  # fmt: skip
    record = CompileRecord(
        qnn_version=spec.qnn_version, ep_sdk_version=f"v{spec.qnn_version}.260101000000",
        onnxruntime=spec.onnxruntime, onnxruntime_qnn=spec.onnxruntime_qnn, soc="sm8550", soc_model=43, htp_arch=73,
        fp16=False, model_sha256="0" * 64, compile_s=1.0, context_binary_bytes=4_140_000,
        context_binary_sha256=f"{spec.qnn_version:0>64}"[-64:],
        op_trace="qnn_op_trace.json" if types is not None else None,
        htp_op_count=sum(types.values()) if types is not None else None, htp_op_types=types,
    )  # fmt: skip
    return VersionResult(
        qnn_version=spec.qnn_version,
        onnxruntime_qnn=spec.onnxruntime_qnn,
        onnxruntime=spec.onnxruntime,
        status="ok",
        compile=record,
        fidelity=Agreement(samples=1, sqnr_db=23.9, exact=False, cosine_mean=0.998, cosine_min=0.998, max_abs_diff=0.3,
                           reference_max_abs=1.0),
        **kw,
    )


def test_consecutive_diffs_skip_failed_versions_and_need_an_op_trace_for_types():
    versions = [
        _version("2.47", types=None),
        _version("2.48", types={"Conv2d": 3}),
        _version("2.49", status="crashed"),
        _version("2.50", types={"Conv2d": 2, "Dequantize": 2}),
    ]
    names = {"2.47.0": None, "2.48.40": ["a", "b", "c"], "2.50.40": ["a", "b", "x_dequant_in", "y"]}
    diffs = consecutive_diffs(versions, names)
    assert [(d.before, d.after) for d in diffs] == [("2.47.0", "2.48.40"), ("2.48.40", "2.50.40")]
    assert diffs[0].op_type_changes is None and diffs[0].htp_ops_before is None  # 2.47: no op trace
    assert diffs[0].ops_added is None and diffs[0].ops_removed is None
    assert [(c.op_type, c.before, c.after) for c in diffs[1].op_type_changes] == [
        ("Dequantize", 0, 2),
        ("Conv2d", 3, 2),
    ]
    assert diffs[1].ops_added == ["x_dequant_in", "y"] and diffs[1].ops_removed == ["c"]
    assert (diffs[1].htp_ops_before, diffs[1].htp_ops_after) == (3, 4)


def _report(versions, names=None) -> CrossVersionReport:
    return CrossVersionReport(
        model="m.qdq.onnx", model_sha256="0" * 64, soc_model=43, htp_arch=73, fp16=False,
        emulated=True, jobs=2, wall_s=12.5, versions=versions, diffs=consecutive_diffs(versions, names),
    )  # fmt: skip


def test_table_and_markdown_show_every_version_and_what_changed():
    versions = [
        _version("2.47", types=None),
        _version("2.48", types={"Conv2d": 3}, cached=True),
        _version("2.49", status="failed", error="HtpUnsupportedError: The QNN HTP rejects 1 node(s)"),
        _version("2.51", types={"Conv2d": 2, "Gelu": 1}),
    ]
    report = _report(versions, {"2.47.0": None, "2.48.40": ["a", "b", "c"], "2.51.0": ["a", "b", "g"]})
    rows = {r["QNN"]: r for r in table_rows(report)}
    assert rows["2.47.0"]["op types vs previous"] == "-"
    assert rows["2.48.40"]["op types vs previous"] == "n/a (no op trace on one side)"
    assert rows["2.48.40"]["status"] == "ok (cached)"
    assert rows["2.49.40"]["status"] == "failed: HtpUnsupportedError: The QNN HTP rejects 1 node(s)"
    assert rows["2.51.0"]["op types vs previous"] == "Conv2d 3->2, Gelu 0->1 (+1/-1 op names)"
    assert rows["2.51.0"]["SQNR (dB)"] == "23.9" and rows["2.51.0"]["context binary (MB)"] == "4.14"
    md = render_markdown(report)
    assert md.count("\n| 2.") == 4 and "nothing here is device latency" in md
    assert "2.48.40 -> 2.51.0: HTP ops 3 -> 3; 1 op name(s) added, 1 removed (e.g. +g, -c)" in md
    assert rows["2.47.0"]["HTP ops"] == "-" and rows["2.48.40"]["HTP ops"] == "3"
    again = CrossVersionReport.model_validate_json(report.model_dump_json())
    assert again == report


# --- real compile (main environment) beside fake failing toolchains ---------------------------


@pytest.fixture(scope="module")
def xs_qdq(tmp_path_factory) -> Path:
    return make_qdq_model("xs", 64, tmp_path_factory.mktemp("xs-qdq"), "w8a8")


def _counting_exit_worker(calls: Path) -> str:
    return f"#!/bin/sh\necho run >> '{calls}'\necho 'error while loading shared libraries: libQnnHtp.so' >&2\nexit 7\n"


@pytest.fixture
def mixed_toolchains(tmp_path) -> tuple[Path, Path]:
    """2.47 segfaults, 2.48 exits 7 (counting its runs), 2.49 reports a rejected op, 2.50 is
    an environment that actually loads QNN 2.51; 2.51 is the main environment."""
    root = tmp_path / "toolchains"
    calls = tmp_path / "exit-worker-calls"
    make_fake_toolchain(root, get_toolchain_spec("2.47"), python_script=CRASHING_WORKER)
    make_fake_toolchain(root, get_toolchain_spec("2.48"), python_script=_counting_exit_worker(calls))
    make_fake_toolchain(root, get_toolchain_spec("2.49"), python_script=REJECTING_WORKER)
    make_fake_toolchain(root, get_toolchain_spec("2.50"))
    return root, calls


def test_failing_versions_are_reported_while_the_others_finish(xs_qdq, mixed_toolchains, tmp_path):
    root, calls = mixed_toolchains
    out = tmp_path / "out"
    cache = StageCache(tmp_path / "cache")
    events = []
    report = compile_across_versions(
        xs_qdq, "all", out, toolchains_root=root, cache=cache, jobs=2, progress=events.append
    )
    by = {v.qnn_version: v for v in report.versions}
    assert [v.qnn_version for v in report.versions] == [s.qnn_version for s in TOOLCHAINS]

    assert by["2.47.0"].status == "crashed" and "SIGSEGV" in by["2.47.0"].error
    assert by["2.48.40"].status == "crashed" and "exit code 7" in by["2.48.40"].error
    assert "libQnnHtp.so" in by["2.48.40"].error  # the worker's last words
    assert by["2.49.40"].status == "failed"
    assert by["2.49.40"].error.startswith("HtpUnsupportedError: The QNN HTP rejects 1 node(s)")
    assert by["2.50.40"].status == "failed" and "reports QNN 2.51.0, expected 2.50.40" in by["2.50.40"].error
    assert "toolchains install 2.50 --force" in by["2.50.40"].error
    # An installed toolchain's worker keeps its bytecode in the toolchain's own directory.
    assert any((root / "qnn-2.50.40" / "pycache").rglob("htp/worker*.pyc"))
    for v in ("2.47.0", "2.48.40", "2.49.40", "2.50.40"):
        saved = read_compile_failure(out / f"qnn-{v}" / COMPILE_FAILURE)
        assert (saved.status, saved.error) == (by[v].status, by[v].error)
        assert not (out / f"qnn-{v}" / COMPILE_RECORD).exists()

    ok = by["2.51.0"]
    d = out / ok.directory
    assert ok.status == "ok" and not ok.cached and ok.compile == read_compile_record(d / COMPILE_RECORD)
    c = ok.compile
    assert c.ep_sdk_version.startswith("v2.51.0") and c.qnn_version == "2.51.0" and c.onnxruntime_qnn == "2.7.0"
    assert c.model_sha256 == sha256_file(xs_qdq) and c.soc == "sm8550"
    assert {"model.ctx.onnx", "model.ctx_qnn.bin", "htp_outputs.npz", "qnn_op_trace.json"} <= set(os.listdir(d))
    assert "qnn_profile.csv" not in os.listdir(d)  # one session, no profile: the op trace names the ops
    assert c.context_binary_bytes == (d / "model.ctx_qnn.bin").stat().st_size
    assert c.context_binary_sha256 == sha256_file(d / "model.ctx_qnn.bin")
    assert c.htp_op_count == sum(c.htp_op_types.values()) > 50
    assert c.htp_op_types.get("Conv2d", 0) > 0 and "unknown" not in c.htp_op_types
    # One compile, one op list: the trace the record names holds every op it counts.
    assert len(traced_op_names(d, c)) == c.htp_op_count
    worker = json.loads((d / "worker_result.json").read_text())
    assert set(worker["phases_s"]) == {"startup", "imports", "compile", "emulator_run", "environment"}
    # The CPU the sweep's floor is made of (nox -s bench): QNN's compile and the emulator run.
    assert set(worker["phases_cpu_s"]) == {"compile", "emulator_run"}
    assert all(v > 0 for v in worker["phases_cpu_s"].values())
    assert sum(worker["phases_cpu_s"].values()) <= worker["cpu_s"]
    assert set(report.phases_s) == {"inputs", "cpu_reference", "workers", "collect"}
    assert ok.fidelity.cosine_min > 0.95 and ok.fidelity.sqnr_db > 10
    assert report.diffs == []  # one version compiled: nothing to compare
    assert read_report(out) == report
    steps = {(e.subject, e.step) for e in events}
    assert ("QNN 2.51.0", "done") in steps and ("QNN 2.47.0", "crashed") in steps

    # A rerun takes the good compile from the cache but tries the failed versions again.
    again = compile_across_versions(xs_qdq, "2.48,2.51", tmp_path / "out2", toolchains_root=root, cache=cache)
    assert again.version("2.51.0").cached and again.version("2.51.0").status == "ok"
    assert again.version("2.51.0").fidelity == ok.fidelity
    assert calls.read_text().count("run") == 2


def test_compile_only_without_the_emulator(xs_qdq, tmp_path):
    report = compile_across_versions(xs_qdq, ["2.51"], tmp_path / "out", emulate=False, cache=StageCache(tmp_path / "c"))
    (v,) = report.versions
    assert v.status == "ok" and v.fidelity is None
    assert len(traced_op_names(tmp_path / "out" / v.directory, v.compile)) == v.compile.htp_op_count
    assert v.compile.context_binary_bytes > 0 and v.compile.htp_op_count > 50  # the op trace needs no emulator
    assert not (tmp_path / "out" / v.directory / "htp_outputs.npz").exists()


def test_bad_requests_fail_before_any_work(xs_qdq, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="Unknown QNN version '2.99'"):
        compile_across_versions(xs_qdq, "2.51,2.99", out)
    with pytest.raises(ToolchainError, match="not installed") as err:
        compile_across_versions(xs_qdq, "2.49,2.51", out, toolchains_root=tmp_path / "empty")
    assert "toolchains install 2.49." in err.value.one_line()
    with pytest.raises(ToolchainError) as err:
        compile_across_versions(xs_qdq, "all", out, toolchains_root=tmp_path / "empty")
    assert err.value.one_line() == (
        "The QNN toolchains 2.47.0, 2.48.40, 2.49.40, 2.50.40 are not installed. "
        "Install them: swiftformer-qnn toolchains install 2.47 2.48 2.49 2.50."
    )
    make_fake_toolchain(tmp_path / "tc", get_toolchain_spec("2.49"), marker=False)
    with pytest.raises(ToolchainError, match="broken"):
        compile_across_versions(xs_qdq, "2.49", out, toolchains_root=tmp_path / "tc")
    with pytest.raises(UsageError, match="No model"):
        compile_across_versions(tmp_path / "missing.onnx", "2.51", out)
    assert not out.exists()


def test_cli_compare_renders_the_table_and_exits_1_on_failed_versions(xs_qdq, mixed_toolchains, tmp_path, monkeypatch):
    root, _ = mixed_toolchains
    monkeypatch.setenv(TOOLCHAINS_ENV, str(root))
    monkeypatch.setenv("COLUMNS", "300")  # rich folds table cells at 80 columns
    out = tmp_path / "cmp"
    runner = CliRunner()
    args = ["toolchains", "compare", str(xs_qdq), "--qnn", "2.47,2.51", "--output-dir", str(out), "--no-emulate"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "crashed: the worker died (SIGSEGV)" in result.stdout
    assert "Not checked: emulator outputs vs the CPU EP (--no-emulate)." in result.stdout
    assert "1 of 2 QNN version(s) did not compile: 2.47.0" in result.stderr
    assert read_report(out).version("2.51.0").status == "ok"

    result = runner.invoke(app, args)  # the output directory exists now
    assert result.exit_code == 2 and "--force" in result.stderr and "Traceback" not in result.output

    result = runner.invoke(app, [*args[:4], "2.47,2.52"])
    assert result.exit_code == 2 and "Unknown QNN version '2.52'" in result.stderr

    result = runner.invoke(app, [*args[:4], "2.51", "--output-dir", str(tmp_path / "md"), "--no-emulate", "--markdown"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("| QNN | onnxruntime-qnn | status |") and "| 2.51.0 | 2.7.0 | ok" in result.stdout
    assert "Not checked: emulator outputs vs the CPU EP (--no-emulate)." in result.stdout


# --- slow: every QNN version for real ---------------------------------------------------------


def _user_toolchains() -> Path:
    root = user_toolchains_root()
    for spec in TOOLCHAINS:
        install_toolchain(spec, root=root)  # a no-op when already installed
    return root


def _check_real_report(report: CrossVersionReport, out: Path) -> None:
    assert [v.status for v in report.versions] == ["ok"] * len(TOOLCHAINS), [v.error for v in report.versions]
    binaries = set()
    for v in report.versions:
        c = v.compile
        assert c == read_compile_record(out / v.directory / COMPILE_RECORD)
        assert c.ep_sdk_version.startswith(f"v{v.qnn_version}.") and c.qnn_version == v.qnn_version
        # QNN 2.47 writes no framework op trace: no HTP op count, rather than a guess.
        if v.qnn_version == "2.47.0":
            assert c.op_trace is None and c.htp_op_count is None
        else:
            assert c.htp_op_count > 50 and len(traced_op_names(out / v.directory, c)) == c.htp_op_count
        assert v.fidelity.cosine_min > 0.95
        binaries.add(c.context_binary_sha256)
    assert len(binaries) == len(TOOLCHAINS)  # each QNN version wrote its own context binary
    assert [(d.before, d.after) for d in report.diffs] == [
        (a.qnn_version, b.qnn_version) for a, b in zip(TOOLCHAINS, TOOLCHAINS[1:], strict=False)
    ]


@pytest.mark.slow
def test_real_compiles_with_every_qnn_version(xs_qdq, tmp_path):
    root = _user_toolchains()
    out = tmp_path / "xs"
    report = compile_across_versions(xs_qdq, "all", out, toolchains_root=root, cache=StageCache(tmp_path / "c"))
    _check_real_report(report, out)
    assert all(d.op_type_changes is not None for d in report.diffs[1:])  # 2.48 onwards trace their ops


@pytest.mark.slow
def test_l1_w8a8_table_across_every_qnn_version(tmp_path):
    """SwiftFormer-L1 at 224, w8a8: the cross-version table (printed with -s)."""
    root = _user_toolchains()
    model = make_qdq_model("l1", 224, tmp_path / "l1", "w8a8")
    out = tmp_path / "l1-versions"
    report = compile_across_versions(model, "all", out, toolchains_root=root, cache=StageCache(tmp_path / "c"))
    print("\n" + render_markdown(report))
    _check_real_report(report, out)
    assert all(v.compile.htp_op_count > 200 for v in report.versions if v.qnn_version != "2.47.0")


def test_worker_compiles_and_runs_without_importing_onnx(xs_qdq, tmp_path):
    """A worker pays every import once per QNN version; onnx (with ml_dtypes, ~0.5 s) is not needed."""
    import subprocess
    import sys

    from swiftformer_qnn.htp.sweep import default_inputs

    np.savez(tmp_path / "in.npz", **default_inputs(xs_qdq))
    request = {"spec": {"model": str(xs_qdq), "out_dir": str(tmp_path / "w"), "target": {"soc_model": 43, "htp_arch": 73}},
               "inputs_npz": str(tmp_path / "in.npz")}
    code = ("import json, sys; from swiftformer_qnn.htp.worker import compile_request; "
            "from swiftformer_qnn.htp.record import CompileJob; "
            f"r = compile_request(CompileJob.model_validate_json({json.dumps(json.dumps(request))})); "
            "print(json.dumps({'onnx': 'onnx' in sys.modules, 'status': r['status']}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"onnx": False, "status": "ok"}
    assert (tmp_path / "w" / "htp_outputs.npz").is_file()


def test_ep_context_nodes_read_without_onnx_match_onnx(xs_qdq, tmp_path):
    import onnx

    from swiftformer_qnn.htp.compile import compile_model
    from swiftformer_qnn.htp.ep_context import graph_nodes
    from swiftformer_qnn.htp.record import CompileSpec
    from swiftformer_qnn.htp.session import HtpTarget

    compile_model(CompileSpec(model=xs_qdq, out_dir=tmp_path, target=HtpTarget()))
    for path in (tmp_path / "model.ctx.onnx", xs_qdq):
        ours = graph_nodes(path)
        theirs = onnx.load(str(path), load_external_data=False).graph.node
        assert [n.op_type for n in ours] == [n.op_type for n in theirs]
        for mine, node in zip(ours, theirs, strict=True):
            strings = {a.name: a.s.decode() for a in node.attribute if a.type == onnx.AttributeProto.STRING}
            assert strings.items() <= mine.strings.items()
    (ctx,) = graph_nodes(tmp_path / "model.ctx.onnx")
    assert ctx.strings["ep_cache_context"] == "model.ctx_qnn.bin" and ctx.strings["ep_sdk_version"].startswith("v2.51.")


def test_worker_env_keeps_bytecode_only_in_the_toolchains_own_directory(tmp_path, monkeypatch):
    from swiftformer_qnn.toolchains import worker_env

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    default = worker_env(tmp_path / "shim")
    assert default["PYTHONDONTWRITEBYTECODE"] == "1" and "PYTHONPYCACHEPREFIX" not in default
    assert default["PYTHONPATH"] == str(tmp_path / "shim")
    installed = worker_env(tmp_path / "shim", tmp_path / "qnn-2.49.40" / "pycache")
    assert "PYTHONDONTWRITEBYTECODE" not in installed
    assert installed["PYTHONPYCACHEPREFIX"] == str(tmp_path / "qnn-2.49.40" / "pycache")


# --- faults: an emulator check that fails after a good compile; a CPU reference that fails ------

# Runs the real worker, but hands its emulator run an input of the wrong shape: onnxruntime's
# own error from `session.run`, after a good compile (the CPU reference gets the right one).
_WRONG_FEED_DRIVER = """
import json, sys
import numpy as np
from swiftformer_qnn.htp import worker as qnn_worker
args = sys.argv[1:]
req_path = args[args.index("--request") + 1]
req = json.loads(open(req_path).read())
with np.load(req["inputs_npz"]) as d:
    feeds = {k: d[k][..., :1] for k in d.files}
np.savez("wrong_inputs.npz", **feeds)
req["inputs_npz"] = "wrong_inputs.npz"
open(req_path, "w").write(json.dumps(req))
sys.exit(qnn_worker.main(args))
"""


def test_compile_model_keeps_a_written_compile_when_then_fails(xs_qdq, tmp_path):
    from swiftformer_qnn.htp.compile import compile_model
    from swiftformer_qnn.htp.record import CompileSpec
    from swiftformer_qnn.htp.session import HtpTarget

    def failing_check(session) -> None:
        raise RuntimeError("the emulator run failed")

    with pytest.raises(RuntimeError, match="the emulator run failed"):
        compile_model(CompileSpec(model=xs_qdq, out_dir=tmp_path, target=HtpTarget()), then=failing_check)
    record = read_compile_record(tmp_path / COMPILE_RECORD)
    assert record.context_binary_sha256 == sha256_file(tmp_path / "model.ctx_qnn.bin")
    assert (tmp_path / "model.ctx.onnx").is_file()


def test_a_failed_emulator_run_keeps_the_compile_and_exits_1(xs_qdq, tmp_path, monkeypatch):
    from swiftformer_qnn.htp import sweep as cross_version

    monkeypatch.setattr(cross_version, "worker_command",
                        lambda python, *args: [str(python), "-s", "-c", _WRONG_FEED_DRIVER, *args])
    monkeypatch.setenv("COLUMNS", "300")
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["toolchains", "compare", str(xs_qdq), "--qnn", "2.51", "--output-dir",
                                      str(out), "--no-cache"])
    assert result.exit_code == 1, result.output
    assert "1 of 1 QNN version(s) compiled but failed the emulator check: 2.51.0" in result.stderr
    assert "did not compile" not in result.stderr and "Traceback" not in result.output
    assert "compiled; emulator check failed" in result.stdout
    report = read_report(out)
    v = report.version("2.51.0")
    assert v.status == "ok" and v.fidelity is None and v.error is None
    assert v.emulator_error.startswith("the HTP emulator run failed: ") and "dimensions" in v.emulator_error
    assert v.compile == read_compile_record(out / v.directory / COMPILE_RECORD)
    assert v.compile.context_binary_sha256 == sha256_file(out / v.directory / "model.ctx_qnn.bin")
    assert not (out / v.directory / COMPILE_FAILURE).exists() and not (out / v.directory / "htp_outputs.npz").exists()
    assert report.failed == [] and report.emulator_failed == [v]
    (row,) = table_rows(report)
    assert row["status"] == f"compiled; emulator check failed: {v.emulator_error}"
    assert row["context binary (MB)"] != "-" and row["SQNR (dB)"] == "-"
    worker = json.loads((out / v.directory / "worker_result.json").read_text())
    assert worker["status"] == "ok" and worker["emulator_error"] == v.emulator_error.removeprefix(
        "the HTP emulator run failed: ")


def test_a_failed_fidelity_check_keeps_the_compile(xs_qdq, tmp_path, monkeypatch):
    from swiftformer_qnn.htp import sweep as cross_version

    real = cross_version.cpu_reference

    def reference_with_an_output_the_htp_lacks(model, feeds):
        names, values = real(model, feeds)
        return [*names, "extra_output"], [*values, values[0]]

    monkeypatch.setattr(cross_version, "cpu_reference", reference_with_an_output_the_htp_lacks)
    out = tmp_path / "out"
    report = compile_across_versions(xs_qdq, ["2.51"], out, cache=StageCache(tmp_path / "c"))
    (v,) = report.versions
    assert v.status == "ok" and v.fidelity is None
    assert v.emulator_error == "the HTP run did not produce output(s) extra_output"
    assert v.compile == read_compile_record(out / v.directory / COMPILE_RECORD)
    assert not (out / v.directory / COMPILE_FAILURE).exists() and report.emulator_failed == [v]
    assert read_report(out) == report


def _slow_crashing_worker(started: Path) -> str:
    return f"#!/bin/sh\ntouch '{started}'\nsleep 2\nexit 7\n"


def _failing_reference(started: Path, error: Exception | None = None):
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    def reference(model, feeds):
        while not started.exists():  # a worker is running when the reference fails
            time.sleep(0.01)
        # What onnxruntime itself raises for an input the model does not take.
        raise error or InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x\nmore")
    return reference


@pytest.fixture
def slow_then_counted(tmp_path) -> tuple[Path, Path, Path]:
    """2.47 runs for 2 s and exits 7; 2.48 and 2.49 count their runs."""
    root, started, calls = tmp_path / "toolchains", tmp_path / "started", tmp_path / "calls"
    make_fake_toolchain(root, get_toolchain_spec("2.47"), python_script=_slow_crashing_worker(started))
    for v in ("2.48", "2.49"):
        make_fake_toolchain(root, get_toolchain_spec(v), python_script=_counting_exit_worker(calls))
    return root, started, calls


def test_a_failing_cpu_reference_stops_the_queue_and_leaves_nothing(xs_qdq, slow_then_counted, tmp_path,
                                                                    monkeypatch):
    from swiftformer_qnn.htp import sweep as cross_version

    root, started, calls = slow_then_counted
    monkeypatch.setattr(cross_version, "cpu_reference", _failing_reference(started))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError) as err:
        compile_across_versions(xs_qdq, "2.47,2.48,2.49", out, toolchains_root=root, jobs=1,
                                cache=StageCache(tmp_path / "c"))
    line = err.value.one_line()
    assert "\n" not in line and "Got invalid dimensions for input: x" in line and "--no-emulate" in line
    assert sorted(os.listdir(out)) == ["notes.txt"]  # the running worker's directory removed, the user's file kept
    assert not calls.exists()  # the queued versions never started

    fresh = tmp_path / "fresh"
    started.unlink()
    with pytest.raises(UsageError):
        compile_across_versions(xs_qdq, "2.47,2.48", fresh, toolchains_root=root, jobs=1,
                                cache=StageCache(tmp_path / "c"))
    assert not fresh.exists() and not calls.exists()

    # A bug of ours is not the user's bad input: it surfaces as itself (exit 3 at the CLI), and
    # what the run wrote still goes.
    started.unlink()
    monkeypatch.setattr(cross_version, "cpu_reference", _failing_reference(started, TypeError("a bug")))
    with pytest.raises(TypeError):
        compile_across_versions(xs_qdq, "2.47,2.48", fresh, toolchains_root=root, jobs=1,
                                cache=StageCache(tmp_path / "c"))
    assert not fresh.exists() and not calls.exists()


def test_a_failing_cpu_reference_leaves_no_output_directory_from_the_cli(xs_qdq, slow_then_counted, tmp_path,
                                                                         monkeypatch):
    from swiftformer_qnn.htp import sweep as cross_version

    root, started, calls = slow_then_counted
    monkeypatch.setattr(cross_version, "cpu_reference", _failing_reference(started))
    monkeypatch.setenv(TOOLCHAINS_ENV, str(root))
    parent = tmp_path / "parent"
    parent.mkdir()
    result = CliRunner().invoke(app, ["toolchains", "compare", str(xs_qdq), "--qnn", "2.47,2.48,2.49",
                                      "--output-dir", str(parent / "cmp"), "--jobs", "1", "--no-cache"])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert "Traceback" not in result.output and len(errors) == 1 and "Got invalid dimensions for input: x" in errors[0]
    assert os.listdir(parent) == [] and not calls.exists()  # no staging directory, no output, no queued run


@pytest.mark.parametrize("jobs", ["0", "-3", "9"])
def test_compare_refuses_a_number_of_parallel_compiles_outside_1_to_8(jobs, tmp_path):
    result = CliRunner().invoke(app, ["toolchains", "compare", str(tmp_path / "m.onnx"), "--jobs", jobs, "--no-install"])
    assert result.exit_code == 2, result.output
    assert "--jobs" in result.output


def test_compare_names_a_missing_model_before_the_toolchains(tmp_path, monkeypatch):
    """A mistyped model path was reported as toolchains not installed (and, without --no-install,
    would have waited for every QNN version's install)."""
    monkeypatch.setenv("SWIFTFORMER_QNN_TOOLCHAINS", str(tmp_path / "no-toolchains"))
    for command in (["toolchains", "compare"], ["compile", "--qnn", "all"]):
        result = CliRunner().invoke(app, [*command, str(tmp_path / "typo.onnx"), "--no-install"])
        assert result.exit_code == 2, result.output
        assert "typo.onnx does not exist" in result.output and "not installed" not in result.output
