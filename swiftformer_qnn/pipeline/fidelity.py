"""Numerical agreement between two sets of model outputs (pure numpy)."""

from __future__ import annotations

import math

import numpy as np


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, *, classify: bool) -> dict:
    """SQNR (dB), mean cosine similarity per sample, max abs diff, and top-1 agreement for logits.

    SQNR is signal power over error power of the whole batch: 10*log10(sum(ref^2)/sum(err^2)).
    """
    ref = reference.reshape(reference.shape[0], -1).astype(np.float64)
    cand = candidate.reshape(candidate.shape[0], -1).astype(np.float64)
    err = ref - cand
    noise = float(np.sum(err**2))
    signal = float(np.sum(ref**2))
    sqnr = math.inf if noise == 0 else 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cos = np.where(norms > 0, np.sum(ref * cand, axis=1) / np.maximum(norms, 1e-30), 1.0)
    out = {
        "samples": int(ref.shape[0]),
        "sqnr_db": round(sqnr, 3) if math.isfinite(sqnr) else sqnr,
        "cosine_mean": float(np.mean(cos)),
        "cosine_min": float(np.min(cos)),
        "max_abs_diff": float(np.max(np.abs(err))) if err.size else 0.0,
        "reference_max_abs": float(np.max(np.abs(ref))) if ref.size else 0.0,
    }
    if classify:
        out["top1_agreement"] = float(np.mean(np.argmax(ref, axis=1) == np.argmax(cand, axis=1)))
    return out


def run_cpu(model_path, inputs: np.ndarray) -> np.ndarray:
    """Run an ONNX model on onnxruntime's CPU EP, one sample at a time (batch is fixed at 1)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: inputs[i : i + 1]})[0] for i in range(inputs.shape[0])])
