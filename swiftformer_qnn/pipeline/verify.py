"""Stages `cpu_qdq` and `verify`: does the quantized model, and the compiled context binary
itself, still compute what the model computes? `cpu_qdq` gives the quantized model's outputs
on the CPU EP; `verify` compares them, fp32's and the binary's on the HTP emulator."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..core.errors import QuantizationFidelityError
from ..core.targets import Precision
from ..htp.emulate import emulate_samples
from ..htp.record import IoTensor
from ..htp.session import HtpTarget
from ..measure.agreement import compare_outputs, run_cpu, sqnr_below
from .localize import (
    MAX_MAP_MISMATCH_DB,
    as_native_io,
    describe,
    divergence,
    locate,
    per_channel_ops,
    run_taps,
    tensor_figures,
    worst_channel_map,
)

# Default --min-sqnr (dB of the quantized model's outputs against fp32, on held-out inputs).
DEFAULT_MIN_SQNR = {Precision.W8A8: 10.0, Precision.W8A16: 20.0, Precision.FP16: 30.0, Precision.MIXED: 10.0}
# The compiled binary on the HTP emulator against the same QDQ graph on the CPU EP: both are
# quantized executions, they differ only in kernel rounding, so agreement must be high.
MIN_EMULATOR_COSINE = 0.99
# What separates clean from corrupt compiles, measured (tests/bench/results/fidelity_matrix.json: XS
# and L1 at 224, realistic weights, w8a8/w8a16, calibration 8-64, the literal graph with and without
# the BN guard, BN folded, and the HTP-ready form; 16 corrupt cells, 48 clean):
# - HTP-vs-CPU output SQNR for w8a16: corrupt 26.6-34.0 dB, clean 49.9 dB and up (XS at 64 px, 8
#   calibration images: 58.7 dB). For w8a8 the two overlap within 1 dB (corrupt up to 27.5, clean
#   from 28.2): the floor only catches gross failures (the corrupt one-BN model: 2.5 dB).
# - CPU-QDQ-vs-fp32 minus HTP-vs-fp32: clean up to 1.05 dB, small BN flips 0.8-1.2 dB: no threshold
#   separates them, so the gap only flags losses well above what a clean compile shows.
# - Per-channel maps of BatchNorm-like ops (localize.channel_map), fitted on each side against its
#   own input on one held-out input: flipped BN channels -6.9 dB or higher, every clean BN -35.6 dB
#   or lower (XS at 64 px, a 2x2 map in the head BN: -29 dB). This is what sees the small flips;
#   graphs without such ops (the default HTP-ready form) skip it: no extra run.
MAX_SQNR_GAP_DB = 3.0
# Mixed keeps w8a8's floor: its 8-bit units round as w8a8's do.
MIN_EMULATOR_SQNR_DB = {Precision.W8A8: 15.0, Precision.W8A16: 42.0, Precision.MIXED: 15.0}
EMULATOR_SAMPLES = 4  # L1: ~1.7 s each on the emulator, two at a time (`htp.emulate`)


def quantized_on_cpu(quantized_model: Path, heldout: np.ndarray, out: Path) -> dict:
    """Stage `cpu_qdq`: the quantized model's outputs on the CPU EP, one per held-out input (for
    fp16, the float graph the HTP runs in fp16), saved to `out` (.npy)."""
    outputs = run_cpu(quantized_model, heldout)
    np.save(out, outputs)
    return {"samples": int(outputs.shape[0])}


def verify_fidelity(
    fp32: np.ndarray,
    quantized_cpu: np.ndarray,
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
    compiled_graph: Path | None = None,
    io: list[IoTensor] | None = None,
) -> dict:
    """fp32 (the float ONNX's outputs on `heldout`, from the validate stage) vs the quantized
    model on the CPU EP over all held-out inputs (`quantized_cpu`, from `quantized_on_cpu`), and
    the context binary on the HTP emulator vs the quantized model on the CPU for
    `emulator_samples` inputs; when the graph has BatchNorm-like ops, each one's per-channel map
    on the HTP vs the CPU on one input. When the binary disagrees, the op where it departs is
    located before the error is raised.

    `compiled_graph`: the QDQ graph the context binary was compiled from, when not
    `quantized_model` itself (the guard stage may have rewritten it); the per-tensor
    runs compile that graph again with its quantized tensors as outputs, in the binary's I/O.
    `io`: the binary's native inputs and outputs (`export --io uint8-nhwc`): the held-out inputs
    are quantized into them and its outputs dequantized, with the scales the compile recorded,
    so every comparison stays in float NCHW; the per-tensor runs take the uint8 NHWC input too."""
    n = min(emulator_samples, heldout.shape[0])
    if quantized_cpu.shape[0] != heldout.shape[0]:
        raise ValueError(f"{quantized_cpu.shape[0]} CPU outputs for {heldout.shape[0]} held-out inputs")
    emulated = emulate(context_model, heldout[:n], target, io=io)
    quantization = compare_outputs(fp32, quantized_cpu, classify=classify)
    emulator = compare_outputs(quantized_cpu[:n], emulated, classify=classify)
    emulator_vs_fp32 = compare_outputs(fp32[:n], emulated, classify=classify)
    cpu_vs_fp32 = compare_outputs(fp32[:n], quantized_cpu[:n], classify=classify)

    if precision is Precision.FP16:
        # The "quantized" model is the float graph itself; only the HTP's fp16 run differs.
        quantization = {**emulator_vs_fp32, "measured_on": "HTP emulator (fp16)"}
    gap = _gap(cpu_vs_fp32, emulator_vs_fp32) if precision.is_quantized else None
    result = {"quantized_vs_fp32": quantization, "emulator_vs_quantized_cpu": emulator,
              "emulator_vs_fp32": emulator_vs_fp32, "quantized_vs_fp32_on_emulated": cpu_vs_fp32,
              "sqnr_gap_db": gap, "max_sqnr_gap_db": MAX_SQNR_GAP_DB, "min_emulator_sqnr_db": MIN_EMULATOR_SQNR_DB.get(precision),
              "min_sqnr_db": min_sqnr, "min_emulator_cosine": MIN_EMULATOR_COSINE, "channel_maps": None}
    if sqnr_below(quantization, min_sqnr):
        raise QuantizationFidelityError(
            f"{precision.value} quantization broke the model: SQNR {_db(quantization['sqnr_db'])} "
            f"< --min-sqnr {min_sqnr:g} on {quantization['samples']} held-out inputs"
            + (f" (top-1 agreement {quantization['top1_agreement']:.0%})." if classify else "."),
            hint="Try --precision w8a16, more or more representative --calibration images, or lower --min-sqnr knowingly.",
        )
    failed = output_failures(emulator, emulator_vs_fp32, cpu_vs_fp32, precision)
    taps = None
    if precision.is_quantized:
        compiled_graph = compiled_graph or quantized_model
        result["channel_maps"], taps = _check_channel_maps(compiled_graph, heldout[:1], target, native=bool(io))
        failed += channel_map_failures(result["channel_maps"], taps[4] if taps else [])
    if failed:
        started = time.perf_counter()

        if taps is not None:  # the tapped run of the channel-map check serves the localization too
            model, chosen, cpu, htp, figures = taps
            finding = divergence(model, chosen, cpu, htp, variant, figures=figures)
        else:
            finding = locate(compiled_graph or quantized_model, heldout[:1], target, variant, native=bool(io))
        took = time.perf_counter() - started + (result["channel_maps"] or {}).get("seconds", 0.0)
        raise QuantizationFidelityError(
            f"The compiled context binary on the HTP emulator disagrees with the quantized model on the CPU "
            f"on {n} held-out inputs ({'; '.join(failed)}); {describe(finding)} [located in {took:.1f} s].",
            hint=_hint(finding),
        )
    return result


def emulate(context_model: Path, inputs: np.ndarray, target: HtpTarget, *, io: list[IoTensor] | None = None) -> np.ndarray:
    """The context binary's first output on the HTP emulator for each batch-1 sample of
    `inputs`, concatenated (`htp.emulate`: one worker process per core). With native I/O (`io`),
    each float NCHW sample is quantized into the binary's input and its output dequantized back,
    with the compile's recorded scales."""
    to_binary, from_binary = _io_conversions(io)
    samples = [to_binary(inputs[i : i + 1]) for i in range(inputs.shape[0])]
    return np.concatenate([from_binary(first) for (first,) in emulate_samples(context_model, target, samples)])


def _io_conversions(io: list[IoTensor] | None):
    """(float input -> what the binary takes, what the binary gives -> float output)."""
    if not io:
        return (lambda x: x), (lambda y: y)
    (inp,) = [t for t in io if t.role == "input"]
    (out,) = [t for t in io if t.role == "output"]
    return inp.from_float, out.to_float


def output_failures(emulator: dict, emulator_vs_fp32: dict, cpu_vs_fp32: dict, precision: Precision) -> list[str]:
    """The output criteria, on `compare_outputs` figures: HTP vs CPU QDQ (`emulator`), and the
    HTP's and the CPU's agreement with fp32 on the same inputs. Empty: they pass."""
    failed = []
    if emulator["cosine_min"] < MIN_EMULATOR_COSINE:
        failed.append(f"cosine {emulator['cosine_min']:.4f} < {MIN_EMULATOR_COSINE}")
    floor = MIN_EMULATOR_SQNR_DB.get(precision)
    if floor is not None and sqnr_below(emulator, floor):
        failed.append(f"SQNR {_db(emulator['sqnr_db'])} < {floor:g} dB for {precision.value}")
    gap = _gap(cpu_vs_fp32, emulator_vs_fp32) if precision.is_quantized else None
    if gap is not None and gap > MAX_SQNR_GAP_DB:
        failed.append(f"HTP vs fp32 {_db(emulator_vs_fp32['sqnr_db'])} is {gap:.1f} dB below "
                      f"CPU QDQ vs fp32 {_db(cpu_vs_fp32['sqnr_db'])}")
    return failed


def channel_map_failures(record: dict | None, figures: list) -> list[str]:
    """The per-channel map criterion on `localize.tensor_figures`: empty when every map agrees."""
    worst = max((f.channel_map.mismatch_db for f in figures if f.channel_map is not None), default=-math.inf)
    if record is None or worst <= MAX_MAP_MISMATCH_DB:
        return []
    return [f"on one of them, {record['worst_node']} maps channel {record['worst_channel']} differently "
            f"({worst:.1f} dB of its output's signal, above {MAX_MAP_MISMATCH_DB:g} dB)"]


def _check_channel_maps(quantized_model: Path, sample: np.ndarray, target: HtpTarget, *, native: bool = False):
    """Run the graph with its quantized tensors as outputs on one input when it has per-channel
    affine ops (BatchNorm): (the check's record, the tapped run) or (None, None) without such ops.
    `native`: as the binary, with native uint8 NHWC I/O (`localize.as_native_io`)."""
    import onnx

    model = onnx.load(str(quantized_model))
    if not per_channel_ops(model):
        return None, None
    if native:
        sample = as_native_io(model, sample)
    started = time.perf_counter()
    chosen, cpu, htp = run_taps(model, sample, target)
    figures = tensor_figures(model, chosen, cpu, htp)
    record = worst_channel_map(chosen, figures) | {"seconds": round(time.perf_counter() - started, 2)}
    return record, (model, chosen, cpu, htp, figures)


def _gap(cpu: dict, htp: dict) -> float | None:
    if cpu["exact"] or cpu["sqnr_db"] is None or htp["sqnr_db"] is None:
        return None
    return round(cpu["sqnr_db"] - htp["sqnr_db"], 3)


def _hint(finding: dict) -> str:
    """What actually helps: another QNN version or calibration only re-rolls the BN rounding."""
    if finding.get("op_type") == "BatchNormalization" and finding.get("why") == "channel map":
        return ("This is onnxruntime-qnn's BatchNorm bias overflow (docs/upstream/qnn-bn-bias-overflow.md): "
                "use the default HTP-ready graph (no --graph faithful), which folds BatchNorm before quantizing.")
    return ("Run `swiftformer-qnn diagnose` on an export of it (--until compile) for the per-block table, "
            "and report the op above with the export's manifest.json.")


def _db(value: float | None) -> str:
    return "undefined (all-zero reference)" if value is None else f"{value:.1f} dB"
