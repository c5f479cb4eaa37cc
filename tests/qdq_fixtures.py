"""Real QDQ (and float) SwiftFormer models for tests that need the HTP (emulator profiles,
compiles), made by the pipeline's own stage functions on realistic random weights.

Inputs are named as the pipeline names them: `image` for full models, `features` for the
standalone block (`swiftformer_qnn.pipeline.onnx_export.io_names`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CALIBRATION_INPUTS = 4


def input_name(variant_name: str) -> str:
    from swiftformer_qnn.model.variants import get_variant
    from swiftformer_qnn.pipeline.onnx_export import io_names

    return io_names(get_variant(variant_name).is_encoder_block)[0]


def make_float_model(variant_name: str, resolution: int, out_dir: Path) -> Path:
    """Export `variant_name` (realistic random weights) at `resolution` and simplify it: the
    float graph the pipeline compiles for fp16 and quantizes otherwise."""
    from swiftformer_qnn.model.swiftformer import build_model, realistic_init
    from swiftformer_qnn.model.variants import get_variant
    from swiftformer_qnn.pipeline.onnx_export import export_onnx, simplify_onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    variant = get_variant(variant_name)
    stem = f"{variant.name}_{resolution}"
    fp32 = out_dir / f"{stem}.fp32.onnx"
    export_onnx(realistic_init(build_model(variant)), variant.input_shape(resolution), fp32,
                is_encoder_block=variant.is_encoder_block)
    sim = out_dir / f"{stem}.sim.onnx"
    simplify_onnx(fp32, sim)
    return sim


def make_qdq_model(variant_name: str, resolution: int, out_dir: Path, precision: str = "w8a8") -> Path:
    """`make_float_model`, then the pipeline's QNN preprocessing + QDQ quantization on a few
    seeded random inputs. Returns `<variant>_<resolution>_<precision>.qdq.onnx` in `out_dir`."""
    from swiftformer_qnn.core.targets import get_precision
    from swiftformer_qnn.model.variants import get_variant
    from swiftformer_qnn.pipeline.quantize import quantize_qdq

    sim = make_float_model(variant_name, resolution, out_dir)
    shape = get_variant(variant_name).input_shape(resolution)
    calibration = np.random.default_rng(0).standard_normal((CALIBRATION_INPUTS, *shape[1:])).astype(np.float32)
    qdq = Path(out_dir) / f"{variant_name}_{resolution}_{precision}.qdq.onnx"
    quantize_qdq(sim, calibration, qdq, get_precision(precision))
    return qdq
