"""Minimal reproduction: onnxruntime-qnn flips the sign of a BatchNormalization bias channel.

One BatchNormalization (C=4, gamma=1, beta=[0.8, -0.5, 0.1, 0.2], mean 0, var 1), quantized
to QDQ with onnxruntime's own QNN recipe (w8a8, per-channel weights), run on the QNN HTP
backend (the x86 HTP emulator bundled with onnxruntime-qnn) and on the CPU EP. Both run the
same QDQ graph, so they should agree to within one quantization step; they do not: the EP
re-quantizes the folded BN bias to int32 with scale max|b|/(2^31-1), float32 rounds that
scale down, round(b/scale) of the largest positive bias is 2^31, and the cast wraps to
INT_MIN -- channel 0's bias becomes -0.8.

Needs only numpy, onnx, onnxruntime and onnxruntime-qnn. Exit status: 1 when the bug
reproduces (HTP vs CPU cosine < 0.99), 0 when it does not. Prints one JSON line.

    python qnn_bn_bias_overflow.py [--beta0 0.8] [--seed 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CALIBRATION_SEED = 4


def one_bn_model(beta: list[float], path: Path) -> None:
    c = len(beta)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in
             (("gamma", [1.0] * c), ("beta", beta), ("mean", [0.0] * c), ("var", [1.0] * c))]
    node = helper.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["y"], name="bn")
    graph = helper.make_graph([node], "one_bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))


def quantize_w8a8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"x": calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self._it, None)

    config = get_qnn_qdq_config(str(src), Reader(), activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QUInt8, per_channel=True)
    quantize(str(src), str(dst), config)


def run(beta0: float = 0.8, seed: int = CALIBRATION_SEED) -> dict:
    import onnxruntime as ort
    import onnxruntime_qnn

    # The calibration range sets the activation scale, hence the bias's quantized value, hence
    # whether float32 rounds the EP's int32 scale down: seed 4 is one that does.
    calibration = np.random.default_rng(seed).standard_normal((8, 4, 8, 8)).astype(np.float32)
    sample = np.random.default_rng(1000).standard_normal((1, 4, 8, 8)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, qdq = Path(tmp) / "bn.onnx", Path(tmp) / "bn.qdq.onnx"
        one_bn_model([beta0, -0.5, 0.1, 0.2], fp32)
        quantize_w8a8(fp32, qdq, calibration)
        cpu = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"]).run(None, {"x": sample})[0]
        try:
            ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
        except Exception as exc:  # registered already in this process
            if "already" not in str(exc).lower():
                raise
        device = next(d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.add_provider_for_devices([device], {"backend_path": onnxruntime_qnn.get_qnn_htp_path(),
                                               "soc_model": "43", "htp_arch": "73"})
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        htp = ort.InferenceSession(str(qdq), so).run(None, {"x": sample})[0]
    a, b = cpu.ravel().astype(np.float64), htp.ravel().astype(np.float64)
    per_channel = [float(np.mean(htp[0, i] - cpu[0, i])) for i in range(4)]
    return {"beta0": beta0, "calibration_seed": seed, "onnxruntime": ort.__version__,
            "qnn_sdk": str(onnxruntime_qnn.build_and_package_info.qnn_version),
            "cosine_htp_vs_cpu": round(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), 4),
            "mean_offset_per_channel": [round(v, 3) for v in per_channel]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beta0", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=CALIBRATION_SEED, help="calibration data seed")
    args = ap.parse_args()
    result = run(args.beta0, args.seed)
    result["reproduced"] = result["cosine_htp_vs_cpu"] < 0.99
    print(json.dumps(result))
    return 1 if result["reproduced"] else 0


if __name__ == "__main__":
    sys.exit(main())
