"""`export --io uint8-nhwc`: the binary takes and gives its quantized tensors, channel-last, and
still computes the model (the same integers as the float-I/O graph; verify passes)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from swiftformer_qnn.core.errors import UsageError
from swiftformer_qnn.htp.record import read_compile_record
from swiftformer_qnn.measure.agreement import run_cpu
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
from swiftformer_qnn.pipeline.native_io import native_io

SMALL = dict(calibration_count=8, heldout_count=4)


@pytest.fixture(scope="module")
def block_native(tmp_path_factory):
    """The standalone encoder block (16x16 map) exported with native I/O, verified on the emulator."""
    out = tmp_path_factory.mktemp("native-io")
    return run_export(ExportRequest(variant="encoder", resolution=16, io="uint8-nhwc", output_dir=out / "x", **SMALL))


def test_native_io_graph_gives_the_same_integers_as_the_float_io_graph(block_native, tmp_path):
    qdq = block_native.artifact("quantize", "model.qdq.onnx")
    model = onnx.load(str(qdq))
    spec = native_io(model)
    onnx.save(model, str(tmp_path / "native.onnx"))
    (inp,) = [t for t in spec if t.role == "input"]
    (out,) = [t for t in spec if t.role == "output"]
    assert inp.shape == [1, 16, 16, 96] and out.shape == [1, 16, 16, 96] and inp.nhwc and out.nhwc
    x = np.load(block_native.directory / "heldout.npy")[:2]
    # The float-I/O graph quantizes x with the same scale and zero point as from_float.
    reference = run_cpu(qdq, inp.to_float(inp.from_float(x)))
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "native.onnx"), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {inp.name: inp.from_float(x[i : i + 1])})[0] for i in range(len(x))])
    assert got.dtype == np.uint8 and got.shape == (2, 16, 16, 96)
    np.testing.assert_array_equal(out.to_float(got), reference)


def test_native_io_export_compiles_without_boundary_ops_and_verifies(block_native):
    record = read_compile_record(block_native.directory / "compile.json")
    assert [(t.role, t.dtype, t.nhwc) for t in record.io] == [("input", "uint8", True), ("output", "uint8", True)]
    # The float-I/O block compiles with a Quantize, a Dequantize and layout ops at its edges.
    assert not {"Quantize", "Dequantize", "Transpose"} & set(record.htp_op_types)
    assert record.graph_cost.layout_ops == 0
    assert record.graph_optimization_mode == 3
    verify = block_native.manifest.stage("verify").results
    assert verify.emulator_vs_fp32.sqnr_db > 15
    assert block_native.manifest.request.io == "uint8-nhwc"


@pytest.mark.parametrize(("io", "precision", "match"), [("uint8", "w8a8", "Unknown --io"),
                                                        ("uint8-nhwc", "w8a16", "needs --precision w8a8")])
def test_bad_io_is_a_usage_error(io, precision, match, tmp_path):
    with pytest.raises(UsageError, match=match):
        run_export(ExportRequest(variant="encoder", io=io, precision=precision, until=Until.ONNX,
                                 output_dir=tmp_path / "x"))
