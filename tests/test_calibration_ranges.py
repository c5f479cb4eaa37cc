"""The quantize stage's calibration (`pipeline.ranges.minmax_ranges`, one single-threaded
session per core, ranges handed to the quantizer through onnxruntime's calibration cache)
gives the ranges, and the QDQ model, that onnxruntime's own MinMax calibrator gives.

The reference is onnxruntime itself: `create_calibrator` + `collect_data` for the ranges, and
`onnxruntime.quantization.quantize` with a data reader (what the stage did before) for the QDQ
model, on the float graph and calibration photographs the pipeline made.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from swiftformer_qnn.pipeline import ExportRequest, run_export
from swiftformer_qnn.pipeline.requests import Until


class _Reader:
    def __init__(self, name: str, data: np.ndarray):
        self._it = iter([{name: data[i : i + 1]} for i in range(data.shape[0])])

    def get_next(self):
        return next(self._it, None)


def _pipeline_quantize(tmp_path, **request):
    req = ExportRequest(until=Until.QUANTIZE, heldout_count=1, output_dir=tmp_path / "export", **request)
    result = run_export(req)
    graph = result.artifact("fold_bn", "model.fold.onnx")
    calibration = np.load(result.artifact("inputs", "calibration.npy"))
    return graph, calibration, result.artifact("quantize", "model.qdq.onnx")


def _onnxruntime_reference(graph, calibration, tmp_path, precision):
    """onnxruntime's ranges (its calibrator) and QDQ model (its quantize()), as a user calls them."""
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    class Reader(_Reader, CalibrationDataReader):
        pass

    name = onnx.load(str(graph), load_external_data=False).graph.input[0].name
    pre = tmp_path / "model.pre.onnx"
    src = pre if qnn_preprocess_model(str(graph), str(pre)) else graph
    activation = {"w8a8": QuantType.QUInt8, "w8a16": QuantType.QUInt16}[precision]
    config = get_qnn_qdq_config(str(src), Reader(name, calibration), activation_type=activation,
                                weight_type=QuantType.QUInt8, per_channel=True)
    reference_qdq = tmp_path / "reference.qdq.onnx"
    quantize(str(src), str(reference_qdq), config)
    calibrator = create_calibrator(src, config.op_types_to_quantize,
                                   augmented_model_path=str(tmp_path / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax)
    calibrator.collect_data(Reader(name, calibration))
    return src, config, calibrator.compute_data(), reference_qdq


def _assert_same(graph, calibration, ours_qdq, tmp_path, precision):
    from swiftformer_qnn.pipeline.ranges import minmax_ranges

    src, config, reference, reference_qdq = _onnxruntime_reference(graph, calibration, tmp_path, precision)
    ours = minmax_ranges(src, calibration, config.op_types_to_quantize)
    assert sorted(ours.keys()) == sorted(reference.keys())
    for name in reference.keys():
        for mine, theirs in zip(ours[name].range_value, reference[name].range_value, strict=True):
            assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, name
            assert np.array_equal(mine, theirs), (name, mine, theirs)

    # The QDQ models: the same nodes, and every initializer (scales, zero points, quantized
    # weights) the same bytes.
    a, b = onnx.load(str(ours_qdq)), onnx.load(str(reference_qdq))
    assert [(n.op_type, list(n.input), list(n.output)) for n in a.graph.node] == \
           [(n.op_type, list(n.input), list(n.output)) for n in b.graph.node]
    inits_a = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    inits_b = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
    assert inits_a.keys() == inits_b.keys()
    scales = [k for k in inits_b if k.endswith("_scale")]
    zero_points = [k for k in inits_b if k.endswith("_zero_point")]
    assert len(scales) > 20 and len(zero_points) > 20
    for k, v in inits_b.items():
        assert inits_a[k].dtype == v.dtype and np.array_equal(inits_a[k], v), k


@pytest.mark.parametrize("precision", ["w8a8", "w8a16"])
def test_xs_ranges_and_qdq_equal_onnxruntime(tmp_path, precision):
    graph, calibration, qdq = _pipeline_quantize(tmp_path, variant="xs", resolution=64, calibration_count=6,
                                                 precision=precision)
    _assert_same(graph, calibration, qdq, tmp_path, precision)


def test_encoder_block_ranges_and_qdq_equal_onnxruntime(tmp_path):
    graph, calibration, qdq = _pipeline_quantize(tmp_path, variant="encoder", resolution=16, calibration_count=6)
    _assert_same(graph, calibration, qdq, tmp_path, "w8a8")


@pytest.mark.slow
def test_l1_ranges_and_qdq_equal_onnxruntime(tmp_path):
    graph, calibration, qdq = _pipeline_quantize(tmp_path, variant="l1", calibration_count=64)
    _assert_same(graph, calibration, qdq, tmp_path, "w8a8")
