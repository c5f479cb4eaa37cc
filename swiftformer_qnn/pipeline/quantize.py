"""Stage `quantize`: QDQ ONNX with onnxruntime's QNN quantization tooling."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from ..core.targets import CalibrationMethod, Precision
from ..model.variants import Variant
from .precision_units import activation_overrides, precision_units, sixteen_bit_nodes
from .ranges import check_reproducible, ranges_by_method

# The activation bit width the ranges are chosen for (the MSE search's): mixed is mostly 8-bit,
# and its candidates share one set of ranges.
ACTIVATION_BITS = {Precision.W8A8: 8, Precision.W8A16: 16, Precision.MIXED: 8}


def quantize_qdq(
    float_model: Path,
    calibration: np.ndarray | None,
    out: Path,
    precision: Precision,
    *,
    sixteen_bit_units: Sequence[str] = (),
    variant: Variant | None = None,
    ranges: Path | None = None,
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX,
) -> dict:
    """QNN preprocessing (fusions the HTP prefers, e.g. LpNormalization), then static QDQ
    quantization with per-channel int8 weights and 8- or 16-bit activations, calibrated on the
    batch-1 samples of `calibration` with the ranges of `calibration_method` (`pipeline.ranges`).

    `mixed`: 8-bit activations except those of `sixteen_bit_units` (`precision_units` of
    `variant`), which exact tensor overrides make 16-bit, with converts where widths meet.
    `ranges`: onnxruntime's calibration cache (JSON): read when it exists (no calibration run;
    `calibration` may then be None; the method is the one that wrote it), else written there, so
    mixed candidates share the ranges."""
    if precision is not Precision.MIXED and sixteen_bit_units:
        raise ValueError("16-bit units are for the mixed precision only")
    with _quiet_onnxruntime(), _weights_at_once():
        return _quantize(float_model, calibration, out, precision, sixteen_bit_units, variant, ranges,
                         calibration_method)


def calibrate(float_model: Path, calibration: np.ndarray, ranges: dict[CalibrationMethod, Path],
              precision: Precision) -> None:
    """Write onnxruntime's calibration cache of each method in `ranges` as `quantize_qdq` would
    (the same preprocessing and tensors), without quantizing; several methods share the passes."""
    with _quiet_onnxruntime(), tempfile.TemporaryDirectory(dir=next(iter(ranges.values())).parent) as tmp:
        src, _ = _preprocessed(float_model, Path(tmp))
        _write_ranges(src, _qnn_config(src, precision), calibration, ranges, precision)


@contextlib.contextmanager
def _quiet_onnxruntime():
    # onnxruntime.quantization warns on the root logger about things that do not apply here
    # (rank-1 BN weights have no channel axis; "consider pre-processing", which we just did).
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# onnxruntime's QDQ quantizer quantizes each per-channel weight one channel at a time in Python
# (quant_utils.quantize_onnx_initializer: about 32,000 calls of quantize_nparray for L1, 0.96 s of
# a 2.4 s quantize_static). `_weights_at_once` gives its quantizer the same arithmetic over every
# channel at once: float32 weight / float32 scale (IEEE division, element by element, so the same
# values in any order), rounded half to even, plus the zero point, clipped and cast. Any other
# case (per-tensor, per-block, float8, int4, non-float32) goes to onnxruntime's own function.
# tests/test_calibration_ranges.py compares the QDQ models with onnxruntime's quantize() byte for
# byte, which runs the original.
_patched = {"depth": 0, "original": None}
_patch_lock = threading.Lock()


def _quantize_channels_at_once(weight, quant_type, zero_point, scale, axis=None, quant_weight_name=None,
                               block_size: int = 0):
    from onnx import numpy_helper
    from onnxruntime.quantization.quant_utils import TENSOR_NAME_QUANT_SUFFIX, get_qmin_qmax_for_qType

    integer = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16)
    data = numpy_helper.to_array(weight) if axis is not None and block_size == 0 and quant_type in integer else None
    scale, zero_point = np.asarray(scale), np.asarray(zero_point)
    if (data is None or data.dtype != np.float32 or scale.dtype != np.float32 or not 0 <= axis < data.ndim
            or scale.shape != (data.shape[axis],) or zero_point.shape != scale.shape):
        from onnxruntime.quantization import quant_utils  # its own, never replaced (qdq_quantizer's name is)

        return quant_utils.quantize_onnx_initializer(weight, quant_type, zero_point, scale, axis, quant_weight_name,
                                                     block_size)
    shape = [1] * data.ndim
    shape[axis] = -1
    dtype = onnx.helper.tensor_dtype_to_np_dtype(quant_type)
    qmin, qmax = get_qmin_qmax_for_qType(quant_type, reduce_range=False, symmetric=False)
    q = (data / scale.reshape(shape)).round() + zero_point.reshape(shape)
    np.clip(q, qmin, qmax, out=q)
    name = quant_weight_name or f"{weight.name}{TENSOR_NAME_QUANT_SUFFIX}"
    return numpy_helper.from_array(q.astype(dtype).reshape(weight.dims), name)


@contextlib.contextmanager
def _weights_at_once():
    """onnxruntime's QDQ quantizer with `_quantize_channels_at_once` while any quantization runs
    (mixed candidates quantize from several threads)."""
    from onnxruntime.quantization import qdq_quantizer

    with _patch_lock:
        if _patched["depth"] == 0:
            _patched["original"] = qdq_quantizer.quantize_onnx_initializer
            qdq_quantizer.quantize_onnx_initializer = _quantize_channels_at_once
        _patched["depth"] += 1
    try:
        yield
    finally:
        with _patch_lock:
            _patched["depth"] -= 1
            if _patched["depth"] == 0:
                qdq_quantizer.quantize_onnx_initializer = _patched["original"]


def _preprocessed(float_model: Path, tmp: Path) -> tuple[Path, bool]:
    """QNN's preprocessing into `tmp` (the float model itself when there is nothing to change)."""
    from onnxruntime.quantization.execution_providers.qnn import qnn_preprocess_model

    pre = tmp / "model.pre.onnx"
    return (pre, True) if qnn_preprocess_model(str(float_model), str(pre)) else (float_model, False)


def _qnn_config(src: Path, precision: Precision, overrides=None):
    """onnxruntime's QNN quantization config; it reads the graph only (QNN's per-op overrides)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    activation = {Precision.W8A8: QuantType.QUInt8, Precision.W8A16: QuantType.QUInt16,
                  Precision.MIXED: QuantType.QUInt8}[precision]
    config = get_qnn_qdq_config(
        str(src), None, activation_type=activation, weight_type=QuantType.QUInt8, per_channel=True,
        init_overrides=overrides, add_qtype_converts=False,  # the overrides carry their converts
    )
    check_reproducible(config)
    return config


# Ops whose weight (input 1) onnxruntime's QDQ quantizer makes per-channel, and the channel axis it
# takes for them (operators/conv.py, operators/gemm.py).
_PER_CHANNEL_WEIGHT_AXIS = {"Conv": lambda node: 0, "ConvTranspose": lambda node: 1,
                            "Gemm": lambda node: 0 if _attribute(node, "transB", 0) else 1}


def _attribute(node, name: str, default):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _add_weight_params(model: onnx.ModelProto, config) -> None:
    """Hand onnxruntime the per-channel scales and zero points of the weights, as tensor overrides.

    Its quantizer computes them one channel at a time in Python (compute_data_quant_params, about
    32,000 calls for L1; the quantize stage of a cold L1 export took 6.8 s with them, 5.7 s
    without, medians of `nox -s bench`). Here each weight's channels are reduced
    at once with the same float32 and float64 operations (compute_scale_zp: the range widened to
    hold 0 and MinimumRealRange, made symmetric, scale = range / (qmax - qmin) in float64, then
    float32), so every scale is the same value (tests/test_calibration_ranges.py compares the QDQ
    models, byte for byte, with onnxruntime's own quantize()). Weights that already have overrides,
    are shared by several nodes or are not float are left to onnxruntime."""
    from onnx import numpy_helper
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    overrides = config.extra_options.setdefault("TensorQuantOverrides", {})
    if not config.per_channel or config.reduce_range:
        return  # per-tensor weights are cheap; reduce_range is not reproduced here
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    qtype = config.weight_type.tensor_type
    qmin, qmax = get_qmin_qmax_for_qType(qtype, reduce_range=False, symmetric=True)
    # Symmetric quantization's zero point does not depend on the range: onnxruntime's own value.
    zero_point, _ = compute_scale_zp(np.array(-1.0, np.float32), np.array(1.0, np.float32), qmin, qmax, True)
    min_range = config.extra_options.get("MinimumRealRange")
    tiny = np.finfo(np.float32).tiny
    for node in graph.node:
        axis_of = _PER_CHANNEL_WEIGHT_AXIS.get(node.op_type)
        if axis_of is None or len(node.input) < 2:
            continue
        name = node.input[1]
        init = initializers.get(name)
        if init is None or name in overrides or readers[name] != 1 or init.data_type != onnx.TensorProto.FLOAT:
            continue
        data = numpy_helper.to_array(init)
        axis = axis_of(node)
        if not 0 <= axis < data.ndim:
            continue
        channels = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1)
        if channels.shape[1] == 0:
            continue
        zero = np.float32(0)
        rmin = np.minimum(channels.min(axis=1), zero)
        rmax = np.maximum(channels.max(axis=1), zero)
        if min_range is not None:
            rmax = np.maximum(rmax, rmin + np.asarray(min_range, dtype=np.float32))
        absmax = np.maximum(np.abs(rmin), np.abs(rmax))
        scale = (absmax.astype(np.float64) - (-absmax).astype(np.float64)) / (
            np.float64(qmax) - np.float64(qmin))
        degenerate = scale < tiny
        scales = np.where(degenerate, np.float32(1.0), scale.astype(np.float32))
        zero_points = np.where(degenerate, np.array(0, dtype=zero_point.dtype), zero_point)
        overrides[name] = [{"scale": s, "zero_point": z} for s, z in zip(scales, zero_points, strict=True)]
        overrides[name][0]["axis"] = axis  # onnxruntime reads a per-channel override's axis from channel 0


def _write_ranges(src, config, calibration, ranges: dict[CalibrationMethod, Path], precision) -> None:
    """onnxruntime's calibration cache of each method in `ranges`, from shared passes over `src`."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    found = ranges_by_method(src, calibration, config.op_types_to_quantize, list(ranges), ACTIVATION_BITS[precision])
    for method, path in ranges.items():
        save_tensors_data(found[method], path)


def _quantize(float_model, calibration, out, precision, sixteen_bit_units=(), variant=None,
              ranges=None, calibration_method=CalibrationMethod.MINMAX) -> dict:
    from onnxruntime.quantization import QuantType, quantize_static
    from onnxruntime.quantization.calibrate import load_tensors_data

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src, preprocessed = _preprocessed(float_model, Path(tmp))
        graph = onnx.load(str(src))  # read once: the mixed overrides and the weights' scales
        overrides = None
        if sixteen_bit_units:
            nodes = sixteen_bit_nodes(precision_units(graph, variant), sixteen_bit_units)
            overrides = activation_overrides(graph, nodes, QuantType.QUInt16, QuantType.QUInt8)
        config = _qnn_config(src, precision, overrides)
        _add_weight_params(graph, config)
        del graph
        ranges = Path(ranges) if ranges is not None else Path(tmp) / "ranges.json"
        if not ranges.is_file():
            _write_ranges(src, config, calibration, {calibration_method: ranges}, precision)
        # onnxruntime refuses a cache whose label differs from the method it is told.
        labelled = load_tensors_data(ranges).calibration_method
        # What onnxruntime.quantization.quantize passes for a StaticQuantConfig, with the ranges
        # through its calibration cache instead of a data reader.
        quantize_static(
            str(src), str(out), None, calibrate_method=labelled, quant_format=config.quant_format,
            activation_type=config.activation_type, weight_type=config.weight_type,
            op_types_to_quantize=config.op_types_to_quantize, nodes_to_quantize=config.nodes_to_quantize,
            nodes_to_exclude=config.nodes_to_exclude, per_channel=config.per_channel,
            reduce_range=config.reduce_range, use_external_data_format=config.use_external_data_format,
            calibration_providers=config.calibration_providers, extra_options=config.extra_options,
            calibration_cache_path=ranges,
        )
    qdq = onnx.load(str(out))
    ops = Counter(n.op_type for n in qdq.graph.node)
    compute = {k: v for k, v in ops.items() if k not in ("QuantizeLinear", "DequantizeLinear")}
    return {"precision": precision.value, "calibration_method": calibration_method.value,
            "calibration_samples": int(calibration.shape[0]) if calibration is not None else None,
            "qnn_preprocessed": preprocessed, "nodes": len(qdq.graph.node),
            "compute_nodes": sum(compute.values()), "qdq_nodes": ops["QuantizeLinear"] + ops["DequantizeLinear"]}


def passthrough_float(float_model: Path, out: Path) -> dict:
    """fp16: no quantization; the HTP runs the float graph in fp16 (enable_htp_fp16_precision)."""
    shutil.copy2(float_model, out)
    return {"precision": Precision.FP16.value, "quantized": False}
