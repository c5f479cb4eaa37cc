"""The quantize stage's calibration (`pipeline.ranges.minmax_ranges`, one single-threaded
session per core, ranges handed to the quantizer through onnxruntime's calibration cache)
gives the ranges, and the QDQ model, that onnxruntime's own MinMax calibrator gives.

The weights' per-channel scales and zero points are handed to onnxruntime's quantizer as tensor
overrides (`quantize._add_weight_params`) instead of computed by it channel by channel; the same
comparisons cover them, and `test_mixed_precision_weight_params_equal_onnxruntimes_own` the mixed
precision's activation overrides beside them.

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

    inits = _assert_same_qdq(ours_qdq, reference_qdq)
    scales = [k for k in inits if k.endswith("_scale")]
    zero_points = [k for k in inits if k.endswith("_zero_point")]
    assert len(scales) > 20 and len(zero_points) > 20


def _assert_same_qdq(ours, reference) -> dict[str, np.ndarray]:
    """The QDQ models: the same nodes, and every initializer (scales, zero points, quantized
    weights) the same bytes. Returns the reference's initializers."""
    a, b = onnx.load(str(ours)), onnx.load(str(reference))
    assert [(n.op_type, list(n.input), list(n.output)) for n in a.graph.node] == \
           [(n.op_type, list(n.input), list(n.output)) for n in b.graph.node]
    inits_a = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    inits_b = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
    assert inits_a.keys() == inits_b.keys()
    for k, v in inits_b.items():
        assert inits_a[k].dtype == v.dtype and np.array_equal(inits_a[k], v), k
    return inits_b


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


# --- the other calibration methods (export --calibration-method) ---------------------------------


def _onnxruntime_histogram_ranges(graph, calibration, tmp_path, method, extra_options):
    """onnxruntime's own calibrator of `method` over the preprocessed graph and tensors the
    quantize stage calibrates, fed the calibration inputs through a data reader."""
    from onnxruntime.quantization import CalibrationDataReader, QuantType
    from onnxruntime.quantization.calibrate import create_calibrator
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    class Reader(_Reader, CalibrationDataReader):
        pass

    name = onnx.load(str(graph), load_external_data=False).graph.input[0].name
    pre = tmp_path / "model.pre.onnx"
    src = pre if qnn_preprocess_model(str(graph), str(pre)) else graph
    config = get_qnn_qdq_config(str(src), None, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                                per_channel=True)
    calibrator = create_calibrator(src, config.op_types_to_quantize, augmented_model_path=str(tmp_path / "aug.onnx"),
                                   calibrate_method=method, extra_options=extra_options)
    calibrator.collect_data(Reader(name, calibration))
    return src, config, calibrator.compute_data()


def _assert_same_ranges(ours, reference):
    assert sorted(ours.keys()) == sorted(reference.keys())
    for name in reference.keys():
        for mine, theirs in zip(ours[name].range_value, reference[name].range_value, strict=True):
            assert np.asarray(mine).dtype == np.asarray(theirs).dtype, name
            assert np.array_equal(np.asarray(mine).reshape(-1), np.asarray(theirs).reshape(-1)), (name, mine, theirs)


@pytest.fixture(scope="module")
def xs_small(tmp_path_factory):
    return _pipeline_quantize(tmp_path_factory.mktemp("xs-small"), variant="xs", resolution=64, calibration_count=6)


@pytest.fixture(scope="module")
def block_small(tmp_path_factory):
    return _pipeline_quantize(tmp_path_factory.mktemp("block-small"), variant="encoder", resolution=16,
                              calibration_count=6)


@pytest.mark.parametrize("model, method", [
    ("xs_small", "percentile"), ("block_small", "percentile"), ("block_small", "entropy"),
    # onnxruntime's entropy search runs Python loops per bin: minutes for XS's tensors.
    pytest.param("xs_small", "entropy", marks=pytest.mark.slow),
])
def test_percentile_and_entropy_ranges_equal_onnxruntime(model, method, request, tmp_path):
    from onnxruntime.quantization.calibrate import CalibrationMethod as OrtMethod

    from swiftformer_qnn.core.targets import CalibrationMethod
    from swiftformer_qnn.pipeline.ranges import ENTROPY_BINS, ranges_by_method

    graph, calibration, _ = request.getfixturevalue(model)
    # Percentile as quantize() runs it (onnxruntime's defaults); Entropy with 2048 bins (module docstring).
    ort_method, extra = {"percentile": (OrtMethod.Percentile, {}),
                         "entropy": (OrtMethod.Entropy, {"num_bins": ENTROPY_BINS})}[method]
    src, config, reference = _onnxruntime_histogram_ranges(graph, calibration, tmp_path, ort_method, extra)
    ours = ranges_by_method(src, calibration, config.op_types_to_quantize, [CalibrationMethod(method)])[method]
    _assert_same_ranges(ours, reference)
    # Not MinMax in disguise: some tensor's range is narrower than its extremes.
    minmax = _minmax(src, calibration, config)
    assert any(not np.array_equal(np.asarray(ours[k].range_value[1]).reshape(-1), minmax[k].range_value[1])
               for k in ours.keys())


def _minmax(src, calibration, config):
    from swiftformer_qnn.pipeline.ranges import minmax_ranges

    return minmax_ranges(src, calibration, config.op_types_to_quantize)


def test_onnxruntime_entropy_at_its_default_128_bins_is_minmax(block_small, tmp_path):
    """Why the entropy method sets 2048 bins: quantize() leaves onnxruntime's Entropy at 128 bins
    and 128 quantized bins, one candidate threshold, the whole range."""
    from onnxruntime.quantization.calibrate import CalibrationMethod as OrtMethod

    graph, calibration, _ = block_small
    src, config, entropy128 = _onnxruntime_histogram_ranges(graph, calibration, tmp_path, OrtMethod.Entropy, {})
    _assert_same_ranges(_minmax(src, calibration, config), entropy128)


def _quantized_mse(x: np.ndarray, lo: float, hi: float, bits: int) -> float:
    """Squared error of x quantized to unsigned `bits` over [lo, hi] (zero included), as an
    asymmetric quantizer rounds: scale from the range, zero point rounded, values clipped."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmax = 2**bits - 1
    scale = (hi - lo) / qmax
    zero = np.round(-lo / scale)
    q = np.clip(np.round(x / scale) + zero, 0, qmax)
    return float(np.mean((x - (q - zero) * scale) ** 2))


@pytest.mark.parametrize("outliers, bits", [(1, 8), (4, 8), (1, 16)])
def test_mse_range_finds_the_clipping_of_least_quantization_error(outliers, bits):
    """A million values uniform on [0, 1] and a few at 4.0: at 8 bits, clipping them costs
    (4 - b)^2 each, keeping them costs rounding noise on every value; at 16 bits the noise is
    negligible and nothing is clipped. The optimum is found here by quantizing the values
    themselves over a fine grid of upper ends."""
    from swiftformer_qnn.pipeline.ranges import ENTROPY_BINS, mse_range

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0.0, 1.0, 1_000_000), np.full(outliers, 4.0)]).astype(np.float32)
    grid = np.linspace(0.5, 4.0, 351)
    errors = np.array([_quantized_mse(x, 0.0, b, bits) for b in grid])
    best = grid[int(np.argmin(errors))]

    threshold = np.array(np.abs(x).max(), dtype=np.float32)
    counts, edges = np.histogram(x, ENTROPY_BINS, range=(-threshold, threshold))
    lo, hi = mse_range(counts, edges, x.min(), x.max(), bits)
    assert lo == 0.0
    assert abs(float(hi) - best) <= 0.03, (float(hi), best)
    assert _quantized_mse(x, 0.0, float(hi), bits) <= 1.01 * errors.min()
    if bits == 16:
        assert float(hi) == pytest.approx(4.0)


def test_mse_range_clips_both_sides_of_a_heavy_tailed_tensor():
    """Laplace values (both signs): the brute force searches both ends on a grid of its own."""
    from swiftformer_qnn.pipeline.ranges import ENTROPY_BINS, mse_range

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.laplace(0.0, 1.0, 200_000), -rng.exponential(1.0, 50_000)]).astype(np.float32)
    ends = np.linspace(0.1, 1.0, 46)
    errors = np.array([[_quantized_mse(x, float(x.min()) * i, float(x.max()) * j, 8) for j in ends] for i in ends])
    i, j = np.unravel_index(int(np.argmin(errors)), errors.shape)
    threshold = np.array(np.abs(x).max(), dtype=np.float32)
    counts, edges = np.histogram(x, ENTROPY_BINS, range=(-threshold, threshold))
    lo, hi = mse_range(counts, edges, x.min(), x.max(), 8)
    assert float(lo) > x.min() * 0.9 and float(hi) < x.max() * 0.9  # both ends clipped
    assert abs(float(lo) - x.min() * ends[i]) <= 0.05 * abs(x.min())
    assert abs(float(hi) - x.max() * ends[j]) <= 0.05 * x.max()
    assert _quantized_mse(x, float(lo), float(hi), 8) <= 1.02 * errors.min()


def test_calibration_method_is_in_the_key_and_the_manifest_and_reuses_earlier_stages(tmp_path):
    from swiftformer_qnn.pipeline.orchestrator import _resolve, default_output_dir

    small = dict(variant="encoder", resolution=16, calibration_count=4, heldout_count=2, until=Until.QUANTIZE)
    first = run_export(ExportRequest(output_dir=tmp_path / "minmax", **small))
    second = run_export(ExportRequest(output_dir=tmp_path / "mse", calibration_method="mse", **small))
    stages = {s.name: s for s in second.manifest.stages}
    assert all(stages[s].cached for s in ("export", "simplify", "fold_bn", "inputs", "reference", "validate"))
    assert not stages["quantize"].cached
    assert second.manifest.request.calibration_method == "mse"
    assert second.manifest.results("quantize", object).calibration_method == "mse"
    assert first.manifest.results("quantize", object).calibration_method == "minmax"
    assert first.manifest.request_key != second.manifest.request_key
    a = onnx.load(str(first.artifact("quantize", "model.qdq.onnx")))
    b = onnx.load(str(second.artifact("quantize", "model.qdq.onnx")))
    scales = lambda m: {i.name: numpy_helper.to_array(i) for i in m.graph.initializer if i.name.endswith("_scale")}  # noqa: E731
    assert any(not np.array_equal(v, scales(b)[k]) for k, v in scales(a).items())
    req = ExportRequest(calibration_method="mse", **small)
    assert default_output_dir(req, _resolve(req)).name == "encoder-d96x16-w8a8-sm8550-cal4-calib-mse-held2-until-quantize"


@pytest.mark.parametrize("args, text", [
    (["--calibration-method", "kl"], "Unknown --calibration-method 'kl'. Choose one of: minmax, percentile, entropy, mse."),
    (["--precision", "fp16", "--calibration-method", "mse"], "--calibration-method mse chooses quantization ranges"),
    (["--until", "onnx", "--calibration-method", "entropy"], "--until onnx quantizes nothing"),
])
def test_bad_calibration_method_is_one_line_and_exit_2(tmp_path, args, text):
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app

    res = CliRunner().invoke(app, ["export", "--variant", "encoder", *args, "--output-dir", str(tmp_path / "o")],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 2, res.output
    assert text in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_several_methods_from_shared_passes_equal_each_method_alone(block_small, tmp_path):
    """The bench computes the four methods' ranges from one pass of reductions and one of
    histograms: the same ranges as each method computed on its own (as an export does)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    from swiftformer_qnn.core.targets import CalibrationMethod
    from swiftformer_qnn.pipeline.ranges import ranges_by_method

    graph, calibration, _ = block_small
    pre = tmp_path / "model.pre.onnx"
    src = pre if qnn_preprocess_model(str(graph), str(pre)) else graph
    ops = get_qnn_qdq_config(str(src), None, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                             per_channel=True).op_types_to_quantize
    shared = ranges_by_method(src, calibration, ops, list(CalibrationMethod), bits=8)
    for method in CalibrationMethod:
        alone = ranges_by_method(src, calibration, ops, [method], bits=8)[method]
        assert shared[method].calibration_method == alone.calibration_method
        _assert_same_ranges(shared[method], alone)


@pytest.mark.slow  # the mixed search compiles and emulates every candidate: ~3 minutes on a loaded machine
def test_mixed_precision_candidates_share_the_chosen_methods_ranges(tmp_path):
    """--precision mixed computes the ranges once for every candidate: by the chosen method (here
    MSE at 8 bits), and the chosen assignment is quantized with them."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    from swiftformer_qnn.core.targets import CalibrationMethod, Precision
    from swiftformer_qnn.pipeline.quantize import calibrate

    r = run_export(ExportRequest(variant="encoder", resolution=16, precision="mixed", calibration_method="mse",
                                 calibration_count=8, heldout_count=4, output_dir=tmp_path / "mixed"))
    assert r.manifest.results("quantize", object).calibration_method == "mse"
    assert r.manifest.stage("sensitivity").options["calibration_method"] == "mse"
    shared = load_tensors_data(r.artifact("sensitivity", "ranges.json"))
    expected = tmp_path / "mse.json"
    calibrate(r.artifact("fold_bn", "model.fold.onnx"), np.load(r.artifact("inputs", "calibration.npy")),
              {CalibrationMethod.MSE: expected}, Precision.MIXED)
    _assert_same_ranges(shared, load_tensors_data(expected))
    minmax = tmp_path / "minmax.json"
    calibrate(r.artifact("fold_bn", "model.fold.onnx"), np.load(r.artifact("inputs", "calibration.npy")),
              {CalibrationMethod.MINMAX: minmax}, Precision.MIXED)
    minmax_ranges = load_tensors_data(minmax)
    assert any(not np.array_equal(np.asarray(shared[k].range_value[1]).reshape(-1),
                                  np.asarray(minmax_ranges[k].range_value[1]).reshape(-1)) for k in shared.keys())


def test_mse_ranges_follow_the_precisions_activation_bits(block_small, tmp_path):
    """w8a16's MSE ranges are searched at 16 bits: finer steps make clipping cost more than it
    saves, so they are at least as wide as w8a8's, and wider somewhere."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    from swiftformer_qnn.core.targets import CalibrationMethod, Precision
    from swiftformer_qnn.pipeline.quantize import calibrate

    graph, calibration, _ = block_small
    found = {}
    for precision in (Precision.W8A8, Precision.W8A16):
        path = tmp_path / f"{precision.value}.json"
        calibrate(graph, calibration, {CalibrationMethod.MSE: path}, precision)
        found[precision] = load_tensors_data(path)
    eight, sixteen = found[Precision.W8A8], found[Precision.W8A16]
    widths = [(float(np.ptp(np.array(eight[k].range_value))), float(np.ptp(np.array(sixteen[k].range_value))))
              for k in eight.keys()]
    assert all(w16 >= w8 for w8, w16 in widths)
    assert any(w16 > w8 for w8, w16 in widths)


def test_mixed_precision_weight_params_equal_onnxruntimes_own(xs_small, tmp_path, monkeypatch):
    """With a mixed assignment's 16-bit activation overrides in the same override table, the QDQ
    model is the one onnxruntime makes when it computes the weights' scales itself."""
    from swiftformer_qnn.core.targets import Precision
    from swiftformer_qnn.model.variants import get_variant
    from swiftformer_qnn.pipeline import quantize
    from swiftformer_qnn.pipeline.precision_units import precision_units

    graph, calibration, _ = xs_small
    variant = get_variant("xs")
    units = [u.name for u in precision_units(onnx.load(str(graph), load_external_data=False), variant)]
    sixteen = (units[0], units[len(units) // 2], units[-1])  # the stem, a middle unit and the head
    ranges = tmp_path / "ranges.json"
    ours, reference = tmp_path / "ours.qdq.onnx", tmp_path / "reference.qdq.onnx"
    quantize.quantize_qdq(graph, calibration, ours, Precision.MIXED, sixteen_bit_units=sixteen, variant=variant,
                          ranges=ranges)
    monkeypatch.setattr(quantize, "_add_weight_params", lambda model, config: None)
    quantize.quantize_qdq(graph, None, reference, Precision.MIXED, sixteen_bit_units=sixteen, variant=variant,
                          ranges=ranges)
    inits = _assert_same_qdq(ours, reference)
    widths = {v.dtype for k, v in inits.items() if k.endswith("_zero_point")}
    assert {np.dtype(np.uint8), np.dtype(np.uint16)} <= widths  # 8- and 16-bit tensors: a mix


# --- the weights quantized every channel at once (quantize._quantize_channels_at_once) ----------


def _refuse(*_args, **_kwargs):
    raise AssertionError("delegated to onnxruntime's channel-by-channel loop")


@pytest.mark.parametrize(("quant_type", "axis", "shape"), [
    (onnx.TensorProto.UINT8, 0, (48, 3, 3, 3)), (onnx.TensorProto.INT8, 0, (16, 8, 1, 1)),
    (onnx.TensorProto.UINT8, 1, (8, 24, 2, 2)), (onnx.TensorProto.UINT16, 1, (32, 10)),
    (onnx.TensorProto.INT16, 0, (7, 5))])
def test_channels_at_once_are_onnxruntimes_bytes(quant_type, axis, shape, monkeypatch):
    """The same quantized initializer as onnxruntime's channel-by-channel loop, ties included
    (values at k + 0.5 steps round half to even in both)."""
    from onnxruntime.quantization import quant_utils
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType, quantize_onnx_initializer

    from swiftformer_qnn.pipeline.quantize import _quantize_channels_at_once

    rng = np.random.default_rng(3)
    data = (rng.standard_normal(shape) * rng.uniform(0.01, 2, shape[axis]).reshape(
        [-1 if d == axis else 1 for d in range(len(shape))])).astype(np.float32)
    channels = shape[axis]
    scale = (np.abs(np.moveaxis(data, axis, 0)).reshape(channels, -1).max(axis=1) / 100).astype(np.float32)
    qmin, qmax = get_qmin_qmax_for_qType(quant_type)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(quant_type)
    zero_point = np.full(channels, (int(qmin) + int(qmax) + 1) // 2, dtype=dtype)
    # Ties: exact half steps of each channel's scale; and values far past the range, to clip.
    flat = np.moveaxis(data, axis, 0).reshape(channels, -1)
    flat[:, 0] = scale * np.float32(2.5)
    flat[:, -1] = scale * np.float32(1e6)
    data = np.moveaxis(flat.reshape(np.moveaxis(data, axis, 0).shape), 0, axis).copy()
    weight = numpy_helper.from_array(data, "w")

    theirs = quantize_onnx_initializer(weight, quant_type, zero_point, scale, axis)
    with monkeypatch.context() as patched:  # the vectorised path itself, not onnxruntime's again
        patched.setattr(quant_utils, "quantize_onnx_initializer", _refuse)
        ours = _quantize_channels_at_once(weight, quant_type, zero_point, scale, axis)
    assert ours.name == theirs.name and list(ours.dims) == list(theirs.dims) and ours.data_type == theirs.data_type
    assert numpy_helper.to_array(ours).tobytes() == numpy_helper.to_array(theirs).tobytes()


def test_the_quantize_stage_quantizes_its_per_channel_weights_at_once(xs_small, tmp_path, monkeypatch):
    """Every per-channel weight of XS goes through the vectorised path, none through onnxruntime's
    loop, and the loop is onnxruntime's own again afterwards."""
    from onnxruntime.quantization import qdq_quantizer

    from swiftformer_qnn.core.targets import Precision
    from swiftformer_qnn.pipeline import quantize

    original = qdq_quantizer.quantize_onnx_initializer
    delegated, vectorised = [], []
    real = quantize._quantize_channels_at_once

    def spy(weight, quant_type, zero_point, scale, axis=None, *args, **kwargs):
        vectorised.append(axis)
        return real(weight, quant_type, zero_point, scale, axis, *args, **kwargs)

    def counting_original(weight, quant_type, zero_point, scale, axis=None, *args, **kwargs):
        delegated.append(axis)
        return original(weight, quant_type, zero_point, scale, axis, *args, **kwargs)

    monkeypatch.setattr(qdq_quantizer, "quantize_onnx_initializer", counting_original)
    monkeypatch.setattr(quantize, "_quantize_channels_at_once", spy)
    graph, calibration, _ = xs_small
    quantize.quantize_qdq(graph, calibration, tmp_path / "xs.qdq.onnx", Precision.W8A8)
    assert qdq_quantizer.quantize_onnx_initializer is counting_original
    per_channel = [a for a in vectorised if a is not None]
    assert len(per_channel) > 20
    assert [a for a in delegated if a is not None] == []
