"""Stage `verify`: does the quantized model, and the compiled context binary itself, still
compute what the model computes?"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import QuantizationFidelityError
from ..qnn import HtpTarget, htp_session
from ..targets import Precision
from .fidelity import compare_outputs, run_cpu, sqnr_below

# Default --min-sqnr (dB of the quantized model's outputs against fp32, on held-out inputs).
DEFAULT_MIN_SQNR = {Precision.W8A8: 10.0, Precision.W8A16: 20.0, Precision.FP16: 30.0}
# The compiled binary on the HTP emulator against the same QDQ graph on the CPU EP: both are
# quantized executions, they differ only in kernel rounding, so agreement must be high.
MIN_EMULATOR_COSINE = 0.99


def verify_fidelity(
    fp32: np.ndarray,
    quantized_model: Path,
    context_model: Path,
    heldout: np.ndarray,
    target: HtpTarget,
    precision: Precision,
    *,
    classify: bool,
    min_sqnr: float,
    emulator_samples: int = 1,
) -> dict:
    """fp32 (the float ONNX's outputs on `heldout`, from the validate stage) vs the quantized
    model on the CPU EP over all held-out inputs, and the context binary on the HTP emulator
    vs the quantized model on the CPU for `emulator_samples` inputs."""
    quant = run_cpu(quantized_model, heldout)
    quantization = compare_outputs(fp32, quant, classify=classify)

    import onnx

    name = onnx.load(str(quantized_model), load_external_data=False).graph.input[0].name
    n = min(emulator_samples, heldout.shape[0])
    session = htp_session(context_model, target)  # one session: loading the context is the slow part
    emulated = np.concatenate([session.run(None, {name: heldout[i : i + 1]})[0] for i in range(n)])
    del session
    emulator = compare_outputs(quant[:n], emulated, classify=classify)
    emulator_vs_fp32 = compare_outputs(fp32[:n], emulated, classify=classify)

    if precision is Precision.FP16:
        # The "quantized" model is the float graph itself; only the HTP's fp16 run differs.
        quantization = {**emulator_vs_fp32, "measured_on": "HTP emulator (fp16)"}
    result = {"quantized_vs_fp32": quantization, "emulator_vs_quantized_cpu": emulator,
              "emulator_vs_fp32": emulator_vs_fp32, "min_sqnr_db": min_sqnr,
              "min_emulator_cosine": MIN_EMULATOR_COSINE}
    if sqnr_below(quantization, min_sqnr):
        raise QuantizationFidelityError(
            f"{precision.value} quantization broke the model: SQNR {_db(quantization['sqnr_db'])} "
            f"< --min-sqnr {min_sqnr:g} on {quantization['samples']} held-out inputs"
            + (f" (top-1 agreement {quantization['top1_agreement']:.0%})." if classify else "."),
            hint="Try --precision w8a16, more or more representative --calibration images, or lower --min-sqnr knowingly.",
        )
    if emulator["cosine_min"] < MIN_EMULATOR_COSINE:
        raise QuantizationFidelityError(
            f"The compiled context binary on the HTP emulator disagrees with the quantized model on the CPU "
            f"(cosine {emulator['cosine_min']:.4f} < {MIN_EMULATOR_COSINE}).",
            hint="Compile with another QNN version (--qnn) and report it.",
        )
    return result


def _db(value: float | None) -> str:
    return "undefined (all-zero reference)" if value is None else f"{value:.1f} dB"
