"""Numerical agreement between two sets of model outputs (pure numpy)."""

from __future__ import annotations

import math

import numpy as np


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, *, classify: bool) -> dict:
    """SQNR (dB), mean and min cosine similarity per sample, max abs diff, and top-1 agreement for logits.

    SQNR is signal power over error power of the whole batch: 10*log10(sum(ref^2)/sum(err^2)).
    It is None (JSON null) where it is not a number: identical outputs (`exact`) or an all-zero
    reference; JSON has no infinity, and a manifest must read back as it was written.
    """
    ref = reference.reshape(reference.shape[0], -1).astype(np.float64)
    cand = candidate.reshape(candidate.shape[0], -1).astype(np.float64)
    err = ref - cand
    noise = float(np.sum(err**2))
    signal = float(np.sum(ref**2))
    sqnr = 10.0 * math.log10(signal / noise) if noise > 0 and signal > 0 else None
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


def run_cpu(model_path, inputs: np.ndarray) -> np.ndarray:
    """Run an ONNX model on onnxruntime's CPU EP, one sample at a time (batch is fixed at 1)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: inputs[i : i + 1]})[0] for i in range(inputs.shape[0])])
