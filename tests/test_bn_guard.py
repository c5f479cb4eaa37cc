"""The BN bias-overflow rule (pure numpy, no EP), its rewrite, the compile guard, and --
against the real QNN EP -- the one-BN reproduction that shows the bug and the rewrite that
removes it."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from swiftformer_qnn.core.errors import BnOverflowError, UsageError
from swiftformer_qnn.htp.bn_guard import overflowing_channels, predict, protect
from swiftformer_qnn.measure.agreement import compare_outputs, run_cpu

REPRO = Path(__file__).resolve().parents[1] / "docs" / "upstream" / "qnn_bn_bias_overflow.py"


def _repro():
    spec = importlib.util.spec_from_file_location("qnn_bn_bias_overflow", REPRO)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _one_bn_qdq(tmp_path: Path, seed: int, beta=(0.8, -0.5, 0.1, 0.2)) -> Path:
    """The reproduction's one-BN model quantized by onnxruntime's QNN recipe (no EP involved)."""
    r = _repro()
    r.one_bn_model(list(beta), tmp_path / f"bn{seed}.onnx")
    calibration = np.random.default_rng(seed).standard_normal((8, 4, 8, 8)).astype(np.float32)
    r.quantize_w8a8(tmp_path / f"bn{seed}.onnx", tmp_path / f"bn{seed}.qdq.onnx", calibration)
    return tmp_path / f"bn{seed}.qdq.onnx"


def test_the_rule_flags_a_positive_maximum_that_float32_rounds_past_int32():
    eps = float(np.float32(1e-5))
    flagged = [b for b in np.linspace(0.5, 1.0, 2001) if overflowing_channels([1, 1], [b, -0.1], [0, 0], [1, 1], eps)]
    assert 0.2 < len(flagged) / 2001 < 0.8  # a coin flip of float32 rounding, as measured on the EP
    b = flagged[0]
    assert overflowing_channels([1, 1], [b, -0.1], [0, 0], [1, 1], eps) == [0]
    # The same magnitude as the most negative bias is safe: INT_MIN is representable.
    assert overflowing_channels([1, 1], [-b, 0.1], [0, 0], [1, 1], eps) == []
    assert overflowing_channels([1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], eps) == []


def test_prediction_on_qdq_graphs_depends_on_the_calibration_as_the_ep_does(tmp_path):
    # Which seeds overflow was checked against the EP (test_rule_agrees_with_the_ep below).
    assert [f.channels for f in predict(onnx.load(str(_one_bn_qdq(tmp_path, 4)))).findings] == [[0]]
    assert predict(onnx.load(str(_one_bn_qdq(tmp_path, 0)))).findings == []
    report = predict(onnx.load(str(_one_bn_qdq(tmp_path, 7))))
    assert report.batchnorms == report.exposed == 1 and report.findings[0].node == "bn"
    assert report.findings[0].folded_bias == [pytest.approx(0.8, abs=1e-3)]


def test_rewrite_quantizes_the_scale_per_channel_exactly(tmp_path):
    qdq = _one_bn_qdq(tmp_path, 4)
    model = onnx.load(str(qdq))
    report = protect(model)
    assert [(f.node, f.channels, f.action) for f in report.findings] == [("bn", [0], "rewritten")]
    assert predict(model).findings == [] and predict(model).exposed == 0
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    x = np.random.default_rng(5).standard_normal((3, 4, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run_cpu(tmp_path / "fixed.onnx", x), run_cpu(qdq, x), atol=1e-6)


def test_a_bn_that_cannot_be_rewritten_is_refused_naming_node_channel_and_fix(tmp_path):
    model = onnx.load(str(_one_bn_qdq(tmp_path, 4)))
    with pytest.raises(BnOverflowError, match=r"BatchNormalization bn channel 0 \(bias \+0\.8.*Fold the BN"):
        protect(model, rewrite=False)


def test_compile_refuses_bad_input_in_one_line(tmp_path):
    from swiftformer_qnn.pipeline import CompileRequest, run_compile

    r = _repro()
    r.one_bn_model([0.8, -0.5, 0.1, 0.2], tmp_path / "float.onnx")
    with pytest.raises(UsageError, match="float model.*--fp16"):
        run_compile(CompileRequest(model=tmp_path / "float.onnx", output_dir=tmp_path / "o1"))
    dyn = onnx.load(str(tmp_path / "float.onnx"))
    dyn.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(dyn, str(tmp_path / "dyn.onnx"))
    with pytest.raises(UsageError, match="dynamic shape \\(batchx4x8x8\\)"):
        run_compile(CompileRequest(model=tmp_path / "dyn.onnx", fp16=True, output_dir=tmp_path / "o2"))
    empty = onnx.helper.make_model(onnx.helper.make_graph([], "e", [], []))
    onnx.save(empty, str(tmp_path / "empty.onnx"))
    with pytest.raises(UsageError, match="no nodes"):
        run_compile(CompileRequest(model=tmp_path / "empty.onnx", output_dir=tmp_path / "o3"))
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3"))


# --- against the real QNN EP (its x86 HTP emulator) -------------------------------------------


def _htp_vs_cpu(model: Path) -> float:
    from swiftformer_qnn.htp.session import HtpTarget, htp_session

    x = np.random.default_rng(1000).standard_normal((1, 4, 8, 8)).astype(np.float32)
    htp = htp_session(model, HtpTarget()).run(None, {"x": x})[0]
    return compare_outputs(run_cpu(model, x), htp, classify=False)["cosine_min"]


def test_rule_agrees_with_the_ep_and_the_rewrite_removes_the_corruption(tmp_path):
    for seed in (4, 7, 0, 1):
        qdq = _one_bn_qdq(tmp_path, seed)
        predicted = bool(predict(onnx.load(str(qdq))).findings)
        assert (_htp_vs_cpu(qdq) < 0.99) == predicted, f"seed {seed}: rule and EP disagree"
    model = onnx.load(str(_one_bn_qdq(tmp_path, 4)))
    protect(model)
    onnx.save(model, str(tmp_path / "guarded.onnx"))
    assert _htp_vs_cpu(tmp_path / "guarded.onnx") > 0.999


def test_compile_of_a_corrupting_qdq_graph_rewrites_it_and_says_so(tmp_path):
    from swiftformer_qnn.pipeline import CompileRequest, run_compile

    qdq = _one_bn_qdq(tmp_path, 4)
    result = run_compile(CompileRequest(model=qdq, output_dir=tmp_path / "out", use_cache=False))
    guard = result.manifest.stage("compile").results.bn_guard
    assert guard["corrupted_predicted"][0] | {"folded_bias": None} == {
        "node": "bn", "channels": [0], "folded_bias": None, "action": "rewritten"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "compile.json", "manifest.json", "model.ctx.onnx", "model.ctx_qnn.bin", "model.guarded.onnx",
        "qnn_op_trace.json"]
    # The graph the binary was compiled from is kept (verify and diagnose run it): the rewritten one.
    assert (tmp_path / "out" / "model.guarded.onnx").read_bytes() != qdq.read_bytes()


def test_an_export_runs_the_bn_guard_once_for_its_compile_and_its_estimate(tmp_path, monkeypatch):
    """The guard stage's model.guarded.onnx is what both compiles of an export compile (the
    estimate's runs beside the export's own): neither guards the quantized graph again."""
    from swiftformer_qnn.htp import bn_guard
    from swiftformer_qnn.pipeline import ExportRequest, Until, run_export

    calls = []
    real = bn_guard.protect
    monkeypatch.setattr(bn_guard, "protect", lambda model, **kw: calls.append(model) or real(model, **kw))
    result = run_export(ExportRequest(variant="encoder", resolution=16, calibration_count=4, heldout_count=2,
                                      until=Until.COMPILE, output_dir=tmp_path / "out", use_cache=False))
    m = result.manifest
    assert m.stage("estimate") is not None and len(calls) == 1
    assert m.stage("compile").results.model_sha256 == m.stage("guard").outputs["model.guarded.onnx"].sha256


def test_upstream_reproduction_still_reproduces():
    """The script in docs/upstream that goes with the bug report. The day an onnxruntime-qnn
    release fixes the bug, this fails: then the guard and the write-up can be revisited."""
    proc = subprocess.run([sys.executable, str(REPRO)], capture_output=True, text=True, timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 1 and result["reproduced"], (
        f"onnxruntime-qnn (QNN {result['qnn_sdk']}) no longer flips the BatchNorm bias: the upstream bug looks "
        f"fixed in this version ({result}). Update docs/upstream/qnn-bn-bias-overflow.md and the guard.")
    assert result["mean_offset_per_channel"][0] == pytest.approx(-1.6, abs=0.05)  # +0.8 became -0.8


def test_verify_sees_a_corrupt_binary_and_locates_the_bn_channel(tmp_path):
    """A binary compiled without the guard: verify fails on the SQNR gap and names the op."""
    from swiftformer_qnn.core.errors import QuantizationFidelityError
    from swiftformer_qnn.core.targets import Precision
    from swiftformer_qnn.htp.compile import compile_model
    from swiftformer_qnn.htp.record import CompileSpec
    from swiftformer_qnn.htp.session import HtpTarget
    from swiftformer_qnn.pipeline.verify import verify_fidelity

    qdq = _one_bn_qdq(tmp_path, 4)
    (tmp_path / "ctx").mkdir()
    compile_model(CompileSpec(model=qdq, out_dir=tmp_path / "ctx", target=HtpTarget()))  # the EP directly: no guard
    heldout = np.random.default_rng(3).standard_normal((4, 4, 8, 8)).astype(np.float32)
    fp32 = run_cpu(tmp_path / "bn4.onnx", heldout)
    with pytest.raises(QuantizationFidelityError) as err:
        verify_fidelity(fp32, run_cpu(qdq, heldout), qdq, tmp_path / "ctx" / "model.ctx.onnx", heldout, HtpTarget(),
                        Precision.W8A8, classify=False, min_sqnr=10)
    text = err.value.one_line()
    assert "on 4 held-out inputs" in text and "dB below CPU QDQ vs fp32" in text
    assert "the HTP departs at bn: BatchNormalization bn" in text and "channel 0 maps differently" in text
    assert re.search(r"bias \+0\.[78]\d* on the CPU vs -0\.[78]\d* on the HTP", text) and "folds BatchNorm" in text


def test_cross_version_compiles_get_the_guarded_graph(tmp_path, caplog):
    from swiftformer_qnn.htp.session import HtpTarget, htp_session
    from swiftformer_qnn.htp.sweep import compile_versions_into

    qdq = _one_bn_qdq(tmp_path, 4)
    report = compile_versions_into(qdq, "2.51", tmp_path / "versions", use_cache=False)
    (ok,) = report.versions
    assert ok.status == "ok", ok.error
    assert "BN guard" in caplog.text and "bn channel 0" in caplog.text
    ctx = tmp_path / "versions" / ok.directory / "model.ctx.onnx"
    x = np.random.default_rng(1000).standard_normal((1, 4, 8, 8)).astype(np.float32)
    htp = htp_session(ctx, HtpTarget()).run(None, {"x": x})[0]
    assert compare_outputs(run_cpu(qdq, x), htp, classify=False)["cosine_min"] > 0.999
