"""Stage `verify`: does the quantized model, and the compiled context binary itself, still
compute what the model computes?"""

from __future__ import annotations

import time
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
# What separated clean from corrupt compiles in the measurements (XS and L1, realistic weights,
# QNN 2.47-2.51): HTP-vs-fp32 SQNR was within 0.35 dB of CPU-QDQ-vs-fp32 in every clean run and
# 2-24 dB worse in corrupt ones; w8a16's HTP-vs-CPU SQNR was 73-77 dB clean, 44.7 dB corrupt
# (cosine 0.99998: a cosine cannot see it). Clean w8a16 at small inputs and few calibration
# images measured lower (XS at 64 px, 8 images: 58.7 dB), hence a floor between the two; clean
# w8a8 XS measured ~29 dB HTP vs CPU, a corrupt one ~9 dB.
MAX_SQNR_GAP_DB = 1.5
MIN_EMULATOR_SQNR_DB = {Precision.W8A8: 15.0, Precision.W8A16: 52.0}
EMULATOR_SAMPLES = 4  # ~1.5 s each for L1 on the emulator


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
    emulator_samples: int = EMULATOR_SAMPLES,
    variant=None,
) -> dict:
    """fp32 (the float ONNX's outputs on `heldout`, from the validate stage) vs the quantized
    model on the CPU EP over all held-out inputs, and the context binary on the HTP emulator
    vs the quantized model on the CPU for `emulator_samples` inputs. When the binary disagrees,
    the op where it starts is located before the error is raised."""
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
    cpu_vs_fp32 = compare_outputs(fp32[:n], quant[:n], classify=classify)

    if precision is Precision.FP16:
        # The "quantized" model is the float graph itself; only the HTP's fp16 run differs.
        quantization = {**emulator_vs_fp32, "measured_on": "HTP emulator (fp16)"}
    gap = _gap(cpu_vs_fp32, emulator_vs_fp32) if precision.is_quantized else None
    floor = MIN_EMULATOR_SQNR_DB.get(precision)
    result = {"quantized_vs_fp32": quantization, "emulator_vs_quantized_cpu": emulator,
              "emulator_vs_fp32": emulator_vs_fp32, "quantized_vs_fp32_on_emulated": cpu_vs_fp32,
              "sqnr_gap_db": gap, "max_sqnr_gap_db": MAX_SQNR_GAP_DB, "min_emulator_sqnr_db": floor,
              "min_sqnr_db": min_sqnr, "min_emulator_cosine": MIN_EMULATOR_COSINE}
    if sqnr_below(quantization, min_sqnr):
        raise QuantizationFidelityError(
            f"{precision.value} quantization broke the model: SQNR {_db(quantization['sqnr_db'])} "
            f"< --min-sqnr {min_sqnr:g} on {quantization['samples']} held-out inputs"
            + (f" (top-1 agreement {quantization['top1_agreement']:.0%})." if classify else "."),
            hint="Try --precision w8a16, more or more representative --calibration images, or lower --min-sqnr knowingly.",
        )
    failed = []
    if emulator["cosine_min"] < MIN_EMULATOR_COSINE:
        failed.append(f"cosine {emulator['cosine_min']:.4f} < {MIN_EMULATOR_COSINE}")
    if floor is not None and sqnr_below(emulator, floor):
        failed.append(f"SQNR {_db(emulator['sqnr_db'])} < {floor:g} dB for {precision.value}")
    if gap is not None and gap > MAX_SQNR_GAP_DB:
        failed.append(f"HTP vs fp32 {_db(emulator_vs_fp32['sqnr_db'])} is {gap:.1f} dB below "
                      f"CPU QDQ vs fp32 {_db(cpu_vs_fp32['sqnr_db'])}")
    if failed:
        started = time.perf_counter()
        from .localize import describe, locate

        finding = locate(quantized_model, heldout[:1], target, variant)
        took = time.perf_counter() - started
        raise QuantizationFidelityError(
            f"The compiled context binary on the HTP emulator disagrees with the quantized model on the CPU "
            f"on {n} held-out inputs ({'; '.join(failed)}); {describe(finding)} [located in {took:.1f} s].",
            hint=_hint(finding),
        )
    return result


def _gap(cpu: dict, htp: dict) -> float | None:
    if cpu["exact"] or cpu["sqnr_db"] is None or htp["sqnr_db"] is None:
        return None
    return round(cpu["sqnr_db"] - htp["sqnr_db"], 3)


def _hint(finding: dict) -> str:
    """What actually helps: another QNN version or calibration only re-rolls the BN rounding."""
    if finding.get("op_type") == "BatchNormalization":
        return ("This is onnxruntime-qnn's BatchNorm bias overflow (docs/upstream/qnn-bn-bias-overflow.md): "
                "use the default HTP-ready graph (no --graph faithful), which folds BatchNorm before quantizing.")
    return ("Run `swiftformer-qnn diagnose` on an export of it (--until compile) for the per-block table, "
            "and report the op above with the export's manifest.json.")


def _db(value: float | None) -> str:
    return "undefined (all-zero reference)" if value is None else f"{value:.1f} dB"
