"""Numerical agreement between two sets of model outputs: the one SQNR (`sqnr_db`) and the one
model of agreement (`Agreement`); and the onnxruntime CPU runs that give the outputs compared
(`cpu_session`, `cpu_runs`)."""

from __future__ import annotations

import math
import threading

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..core.interrupt import STOPPING, Stopped


class Agreement(BaseModel):
    """Two sets of model outputs compared (`compare_outputs`): the one model of output agreement
    that verify, the profile's output check and the cross-version comparison record."""

    model_config = ConfigDict(extra="forbid")

    samples: int
    # Signal over error power of the whole batch, dB; None where it is not a number:
    # identical outputs (`exact`) or an all-zero reference.
    sqnr_db: float | None
    exact: bool
    cosine_mean: float
    cosine_min: float
    max_abs_diff: float
    reference_max_abs: float
    top1_agreement: float | None = None  # for logits
    measured_on: str | None = None  # where the candidate ran, when not the CPU


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """Signal power over error power, dB: 10*log10(sum(ref^2)/sum(err^2)). None where it is not
    a number: identical outputs (no error) or an all-zero reference (no signal); JSON has no
    infinity, and a record must read back as it was written."""
    ref = np.asarray(reference, dtype=np.float64)
    err = ref - np.asarray(candidate, dtype=np.float64)
    noise, signal = float(np.sum(err**2)), float(np.sum(ref**2))
    return 10.0 * math.log10(signal / noise) if noise > 0 and signal > 0 else None


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, *, classify: bool) -> dict:
    """SQNR (dB), mean and min cosine similarity per sample, max abs diff, and top-1 agreement for logits.

    SQNR (`sqnr_db`) is over the whole batch; the figures are `Agreement`'s fields.
    """
    ref = reference.reshape(reference.shape[0], -1).astype(np.float64)
    cand = candidate.reshape(candidate.shape[0], -1).astype(np.float64)
    err = ref - cand
    noise = float(np.sum(err**2))
    sqnr = sqnr_db(ref, cand)
    ref_norm, cand_norm = np.linalg.norm(ref, axis=1), np.linalg.norm(cand, axis=1)
    norms = ref_norm * cand_norm
    # Two zero vectors agree (1); a zero vector against a non-zero one does not (0).
    both_zero = (ref_norm == 0) & (cand_norm == 0)
    cos = np.where(norms > 0, np.sum(ref * cand, axis=1) / np.maximum(norms, 1e-30), np.where(both_zero, 1.0, 0.0))
    out = {
        "samples": int(ref.shape[0]),
        "sqnr_db": round(sqnr, 3) if sqnr is not None else None,
        "exact": noise == 0.0,
        "cosine_mean": float(np.mean(cos)),
        "cosine_min": float(np.min(cos)),
        "max_abs_diff": float(np.max(np.abs(err))) if err.size else 0.0,
        "reference_max_abs": float(np.max(np.abs(ref))) if ref.size else 0.0,
    }
    if classify:
        out["top1_agreement"] = float(np.mean(np.argmax(ref, axis=1) == np.argmax(cand, axis=1)))
    return out


def sqnr_below(figures: dict, minimum: float) -> bool:
    """True when the SQNR fails `minimum`; identical outputs pass, an undefined SQNR fails."""
    if figures["exact"]:
        return False
    return figures["sqnr_db"] is None or figures["sqnr_db"] < minimum


def cpu_workers(samples: int) -> int:
    """How many CPU sessions share `samples` batch-1 runs: one per core."""
    import os

    return max(1, min(samples, len(os.sched_getaffinity(0))))


def cpu_session(model, *, optimize: bool = True, memory_pattern: bool = True):
    """An onnxruntime CPU EP session of an ONNX model (a path, or serialized bytes) with
    onnxruntime's default intra-op thread count (it decides how MLAS splits an op, and so its float
    rounding), whose threads do not spin between ops: spinning burns a core that another session,
    a worker process or another program needs, and changes scheduling, not results. `optimize` and
    `memory_pattern`: as `cpu_runs` says."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.enable_mem_pattern = memory_pattern
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                providers=["CPUExecutionProvider"])


def cpu_runs(model, inputs: np.ndarray, *, outputs: list[str] | None = None, optimize: bool = True,
             workers: int | None = None, each=None, memory_pattern: bool = True) -> list[list[np.ndarray]]:
    """Run an ONNX model (a path, or serialized bytes) on onnxruntime's CPU EP over the batch-1
    samples of `inputs`; per sample, the values of `outputs` (default: every graph output).
    `each(values)`: called with each sample's values instead of keeping them (an empty list is
    returned), when all of them together would not fit in memory; one call at a time.

    The samples are shared among one session per core, run from threads (onnxruntime releases
    the GIL while it runs): a batch-1 pass of these models is many small ops, which one session's
    intra-op pool keeps busy poorly, so a second session fills the gaps. Each session is a
    `cpu_session`, with onnxruntime's default thread count: a single-threaded session's
    activations would differ in the last bits, which would move calibration ranges.
    `optimize=False` runs the graph as written (ORT_DISABLE_ALL), as onnxruntime's calibrator
    does. `memory_pattern=False`: no pre-planned block for all of a run's tensors (onnxruntime's
    memory pattern); allocation only, the values are the same."""
    from concurrent.futures import ThreadPoolExecutor

    n = inputs.shape[0]
    workers = max(1, min(workers or cpu_workers(n), n))
    results: list[list[np.ndarray] | None] = [None] * n
    handing = threading.Lock()

    def work(k: int) -> None:
        sess = cpu_session(model, optimize=optimize, memory_pattern=memory_pattern)
        name = sess.get_inputs()[0].name
        for i in range(k, n, workers):
            # A stage thread's runs beside a worker (cpu_qdq beside the compile): a signal stops
            # them between samples, not after all of them (core.interrupt).
            if STOPPING.is_set():
                raise Stopped()
            values = sess.run(outputs, {name: inputs[i : i + 1]})
            if each is None:
                results[i] = values
            else:
                with handing:
                    each(values)

    if workers == 1:
        work(0)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="cpu-run") as pool:
            list(pool.map(work, range(workers)))  # list(): re-raise a worker's error
    return [] if each is not None else results  # type: ignore[return-value]


def run_cpu(model_path, inputs: np.ndarray, *, workers: int | None = 1) -> np.ndarray:
    """The first output of an ONNX model on onnxruntime's CPU EP for each batch-1 sample of
    `inputs`, concatenated (`cpu_runs`). One session by default: the pipeline runs it beside
    other work (validate's beside the calibration, cpu_qdq's beside the compile and estimate workers),
    and each more session holds its own copy of the weights and activations (~250 MB for L1 at
    224)."""
    return np.concatenate([r[0] for r in cpu_runs(model_path, inputs, workers=workers)])
