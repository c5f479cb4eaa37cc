"""Stage `quantize`: QDQ ONNX with onnxruntime's QNN quantization tooling."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from ..core.targets import Precision
from ..model.variants import Variant
from .precision_units import activation_overrides, precision_units, sixteen_bit_nodes
from .ranges import check_reproducible, minmax_ranges


def quantize_qdq(
    float_model: Path,
    calibration: np.ndarray | None,
    out: Path,
    precision: Precision,
    *,
    sixteen_bit_units: Sequence[str] = (),
    variant: Variant | None = None,
    ranges: Path | None = None,
) -> dict:
    """QNN preprocessing (fusions the HTP prefers, e.g. LpNormalization), then static QDQ
    quantization with per-channel int8 weights and 8- or 16-bit activations, calibrated on the
    batch-1 samples of `calibration` with onnxruntime's MinMax ranges (`ranges.minmax_ranges`).

    `mixed`: 8-bit activations except those of `sixteen_bit_units` (`precision_units` of
    `variant`), which exact tensor overrides make 16-bit, with converts where widths meet.
    `ranges`: onnxruntime's calibration cache (JSON): read when it exists (no calibration run;
    `calibration` may then be None), else written there, so mixed candidates share the ranges."""
    from onnxruntime.quantization import QuantType

    activation = {Precision.W8A8: QuantType.QUInt8, Precision.W8A16: QuantType.QUInt16,
                  Precision.MIXED: QuantType.QUInt8}[precision]
    if precision is not Precision.MIXED and sixteen_bit_units:
        raise ValueError("16-bit units are for the mixed precision only")
    # onnxruntime.quantization warns on the root logger about things that do not apply here
    # (rank-1 BN weights have no channel axis; "consider pre-processing", which we just did).
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return _quantize(float_model, calibration, out, activation, precision, sixteen_bit_units, variant, ranges)
    finally:
        root.setLevel(level)


def _quantize(float_model, calibration, out, activation, precision, sixteen_bit_units=(), variant=None,
              ranges=None) -> dict:
    from onnxruntime.quantization import QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pre = Path(tmp) / "model.pre.onnx"
        src = pre if qnn_preprocess_model(str(float_model), str(pre)) else float_model
        overrides = None
        if sixteen_bit_units:
            graph = onnx.load(str(src), load_external_data=False)
            nodes = sixteen_bit_nodes(precision_units(graph, variant), sixteen_bit_units)
            overrides = activation_overrides(graph, nodes, QuantType.QUInt16, QuantType.QUInt8)
        # The config reads the graph only (QNN's per-op overrides); the calibration comes below.
        config = get_qnn_qdq_config(
            str(src), None, activation_type=activation, weight_type=QuantType.QUInt8, per_channel=True,
            init_overrides=overrides, add_qtype_converts=False,  # the overrides carry their converts
        )
        check_reproducible(config)
        ranges = Path(ranges) if ranges is not None else Path(tmp) / "ranges.json"
        if not ranges.is_file():
            save_tensors_data(minmax_ranges(src, calibration, config.op_types_to_quantize), ranges)
        # What onnxruntime.quantization.quantize passes for a StaticQuantConfig, with the ranges
        # through its calibration cache instead of a data reader.
        quantize_static(
            str(src), str(out), None, calibrate_method=config.calibrate_method, quant_format=config.quant_format,
            activation_type=config.activation_type, weight_type=config.weight_type,
            op_types_to_quantize=config.op_types_to_quantize, nodes_to_quantize=config.nodes_to_quantize,
            nodes_to_exclude=config.nodes_to_exclude, per_channel=config.per_channel,
            reduce_range=config.reduce_range, use_external_data_format=config.use_external_data_format,
            calibration_providers=config.calibration_providers, extra_options=config.extra_options,
            calibration_cache_path=ranges,
        )
        preprocessed = src == pre
    qdq = onnx.load(str(out))
    ops = Counter(n.op_type for n in qdq.graph.node)
    compute = {k: v for k, v in ops.items() if k not in ("QuantizeLinear", "DequantizeLinear")}
    return {"precision": precision.value,
            "calibration_samples": int(calibration.shape[0]) if calibration is not None else None,
            "qnn_preprocessed": preprocessed, "nodes": len(qdq.graph.node),
            "compute_nodes": sum(compute.values()), "qdq_nodes": ops["QuantizeLinear"] + ops["DequantizeLinear"]}


def passthrough_float(float_model: Path, out: Path) -> dict:
    """fp16: no quantization; the HTP runs the float graph in fp16 (enable_htp_fp16_precision)."""
    shutil.copy2(float_model, out)
    return {"precision": Precision.FP16.value, "quantized": False}
