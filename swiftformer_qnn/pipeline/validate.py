"""Stages `reference` (the PyTorch model's outputs on the held-out inputs) and `validate`: the
simplified ONNX graph computes what the PyTorch model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import ExportValidationError
from ..measure.agreement import compare_outputs, run_cpu
from ..model.variants import Variant

# Largest |onnx - torch| allowed, relative to the largest |torch output|. Deeper models
# accumulate more float32 reordering error (onnxsim folds BN into convs), hence per variant.
RELATIVE_TOLERANCE = {"xs": 1e-3, "s": 1e-3, "l1": 2e-3, "l3": 3e-3, "encoder": 1e-3}
MIN_COSINE = 0.9999


# Batches of 4 held 20-40 MB less than batches of 8 (L1 at 224, measured when the reference ran
# inside validate, beside the calibration) and took no longer (L1's 16 held-out inputs: 0.53-0.62 s
# against 0.62-0.64 s).
TORCH_BATCH = 4


def torch_outputs(model, inputs: np.ndarray) -> np.ndarray:
    """The PyTorch model's outputs, in batches (the reference differs from batch-1 passes only
    in float rounding, far inside RELATIVE_TOLERANCE; batches make its convolutions cheaper)."""
    import torch

    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(inputs[i : i + TORCH_BATCH])).numpy()
                               for i in range(0, inputs.shape[0], TORCH_BATCH)])


def validate_onnx(
    onnx_path: Path, reference: np.ndarray, inputs: np.ndarray, variant: Variant, *, got: np.ndarray | None = None
) -> tuple[dict, np.ndarray]:
    """Compare ONNX Runtime (CPU) on `inputs` with the PyTorch outputs `reference`; `got`: the
    ONNX outputs when already run (`run_cpu`).

    Returns the figures and the ONNX outputs (the fp32 reference the verify stage reuses)."""
    got = run_cpu(onnx_path, inputs) if got is None else got
    if got.shape != reference.shape:
        raise ExportValidationError(
            f"{onnx_path.name} returns shape {got.shape[1:]}, PyTorch {reference.shape[1:]}.",
            hint="Re-export with --force; report a bug if it persists.",
        )
    figures = compare_outputs(reference, got, classify=not variant.is_encoder_block)
    tol = RELATIVE_TOLERANCE[variant.name] * max(1.0, figures["reference_max_abs"])
    figures.update({"tolerance_abs": tol, "min_cosine": MIN_COSINE})
    if figures["max_abs_diff"] > tol or figures["cosine_min"] < MIN_COSINE:
        raise ExportValidationError(
            f"The ONNX export does not match PyTorch on {figures['samples']} held-out inputs: "
            f"max |diff| {figures['max_abs_diff']:.3g} (tolerance {tol:.3g}), min cosine {figures['cosine_min']:.6f}.",
            hint="Try another --opset or report the variant and weights.",
        )
    return figures, got
