"""Real QDQ (and float) SwiftFormer models for tests that need the HTP (emulator profiles, compiles).

A straight-line copy of the export -> simplify -> QNN preprocess -> QDQ quantize recipe in
/work/shared/notes/qnn-toolchain-facts.md. The pipeline (`swiftformer_qnn.pipeline`) will
replace the body; the signature of `make_qdq_model` stays.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

PRECISIONS = {"w8a8": "QUInt8", "w8a16": "QUInt16"}
CALIBRATION_INPUTS = 4


def make_float_model(variant_name: str, resolution: int, out_dir: Path) -> Path:
    """Export `variant_name` (realistic random weights) at `resolution`, simplify, QNN-preprocess.

    Returns the float ONNX (`<variant>_<resolution>.pre.onnx` in `out_dir`): what the HTP runs
    in fp16 mode, and what `make_qdq_model` quantizes.
    """
    import onnx
    import onnxsim
    import torch
    from onnxruntime.quantization.execution_providers.qnn import qnn_preprocess_model

    from swiftformer_qnn.model import build_model, realistic_init
    from swiftformer_qnn.variants import get_variant

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    variant = get_variant(variant_name)
    stem = f"{variant.name}_{resolution}"
    model = realistic_init(build_model(variant))
    fp32 = out_dir / f"{stem}.fp32.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is the one the toolchain facts were measured with.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(variant.input_shape(resolution)),),
            str(fp32),
            opset_version=20,
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
        )
    simplified, ok = onnxsim.simplify(onnx.load(str(fp32)))
    if not ok:
        raise RuntimeError(f"onnxsim could not validate the simplified {stem}")
    # qnn_preprocess_model chokes on onnxsim's metadata_props (TypeError in onnxruntime 1.31.1).
    del simplified.metadata_props[:]
    sim = out_dir / f"{stem}.sim.onnx"
    onnx.save(simplified, str(sim))
    pre = out_dir / f"{stem}.pre.onnx"
    if not qnn_preprocess_model(str(sim), str(pre)):
        sim.replace(pre)  # nothing to fuse: the simplified model is the preprocessed one
    return pre


def make_qdq_model(variant_name: str, resolution: int, out_dir: Path, precision: str = "w8a8") -> Path:
    """Build `variant_name` with realistic random weights at `resolution` and quantize it to QDQ ONNX.

    Returns the path of the QDQ model (`<variant>_<resolution>_<precision>.qdq.onnx` in `out_dir`).
    Input is named `image`, output `logits` (for the encoder variant, the block's output).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    from swiftformer_qnn.variants import get_variant

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not in {sorted(PRECISIONS)}")
    out_dir = Path(out_dir)
    pre = make_float_model(variant_name, resolution, out_dir)
    shape = get_variant(variant_name).input_shape(resolution)
    rng = np.random.default_rng(0)
    samples = [rng.standard_normal(shape).astype(np.float32) for _ in range(CALIBRATION_INPUTS)]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(samples)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"image": x}

    act = getattr(QuantType, PRECISIONS[precision])
    config = get_qnn_qdq_config(
        str(pre), _Reader(), activation_type=act, weight_type=QuantType.QUInt8, per_channel=True
    )
    qdq = out_dir / f"{pre.name.removesuffix('.pre.onnx')}_{precision}.qdq.onnx"
    quantize(str(pre), str(qdq), config)
    return qdq
