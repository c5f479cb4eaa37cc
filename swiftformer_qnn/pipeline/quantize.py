"""Stage `quantize`: QDQ ONNX with onnxruntime's QNN quantization tooling."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from ..core.targets import Precision


class _ArrayReader:
    """A CalibrationDataReader over an N x ... array, one batch-1 sample at a time."""

    def __init__(self, name: str, data: np.ndarray):
        self._it = iter([{name: data[i : i + 1]} for i in range(data.shape[0])])

    def get_next(self):
        return next(self._it, None)


def quantize_qdq(float_model: Path, calibration: np.ndarray, out: Path, precision: Precision) -> dict:
    """QNN preprocessing (fusions the HTP prefers, e.g. LpNormalization), then static QDQ
    quantization with per-channel int8 weights and 8- or 16-bit activations."""
    from onnxruntime.quantization import CalibrationDataReader, QuantType

    class Reader(_ArrayReader, CalibrationDataReader):
        pass

    activation = {Precision.W8A8: QuantType.QUInt8, Precision.W8A16: QuantType.QUInt16}[precision]
    input_name = onnx.load(str(float_model), load_external_data=False).graph.input[0].name
    # onnxruntime.quantization warns on the root logger about things that do not apply here
    # (rank-1 BN weights have no channel axis; "consider pre-processing", which we just did).
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return _quantize(float_model, calibration, out, activation, input_name, precision, Reader)
    finally:
        root.setLevel(level)


def _quantize(float_model, calibration, out, activation, input_name, precision, reader_cls) -> dict:
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pre = Path(tmp) / "model.pre.onnx"
        src = pre if qnn_preprocess_model(str(float_model), str(pre)) else float_model
        config = get_qnn_qdq_config(
            str(src), reader_cls(input_name, calibration),
            activation_type=activation, weight_type=QuantType.QUInt8, per_channel=True,
        )
        quantize(str(src), str(out), config)
        preprocessed = src == pre
    qdq = onnx.load(str(out))
    ops = Counter(n.op_type for n in qdq.graph.node)
    compute = {k: v for k, v in ops.items() if k not in ("QuantizeLinear", "DequantizeLinear")}
    return {"precision": precision.value, "calibration_samples": int(calibration.shape[0]),
            "qnn_preprocessed": preprocessed, "nodes": len(qdq.graph.node),
            "compute_nodes": sum(compute.values()), "qdq_nodes": ops["QuantizeLinear"] + ops["DequantizeLinear"]}


def passthrough_float(float_model: Path, out: Path) -> dict:
    """fp16: no quantization; the HTP runs the float graph in fp16 (enable_htp_fp16_precision)."""
    shutil.copy2(float_model, out)
    return {"precision": Precision.FP16.value, "quantized": False}
