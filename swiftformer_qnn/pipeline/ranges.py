"""Activation ranges for static quantization: the ranges onnxruntime's MinMax calibration
gives, computed on every core.

onnxruntime's `MinMaxCalibrater` makes a ReduceMin and a ReduceMax of every float tensor of
the op types to quantize a graph output, runs that graph as written (ORT_DISABLE_ALL) once per
calibration sample, on one session, and keeps the lowest minimum and the highest maximum over
the samples. `minmax_ranges` runs the same passes (the tensors its own `select_tensors_to_calibrate`
picks, the same reductions, the same optimization level and intra-op thread count, batch 1)
spread over one session per core, and reduces them the same way, so each range is the same
float32 value (tests/test_calibration_ranges.py checks scales and zero points against
onnxruntime's own calibrator on XS, L1 and the encoder block). The quantizer then reads the
ranges through onnxruntime's calibration cache instead of calibrating again.

Not batched: a batch dimension on the calibration graph was measured slower per sample on
these 2-core machines (L1 at 224, batch 16, unoptimized graph), and onnxruntime's ReduceMean
over a batch of 16 rounds differently from 16 single passes (the head's pooled features moved
by one ulp), which would change the ranges.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..measure.agreement import cpu_runs

# Calibration options of onnxruntime's MinMax calibrator that `minmax_ranges` does not reproduce.
UNSUPPORTED_CALIBRATION_OPTIONS = ("CalibTensorRangeSymmetric", "CalibMovingAverage")


def minmax_ranges(model_path: Path, samples: np.ndarray, op_types: Sequence[str] | None):
    """onnxruntime `TensorsData` (MinMax) of `model_path`'s calibrated tensors over the batch-1
    samples of `samples` (N x input shape)."""
    from onnx import helper
    from onnxruntime.quantization.calibrate import CalibrationMethod, MinMaxCalibrater, TensorsData

    if samples.shape[0] < 1:
        raise ValueError("no calibration samples")
    with tempfile.TemporaryDirectory(prefix="sfq-ranges-") as tmp:
        # onnxruntime's own loading (with shape inference) and choice of tensors; its
        # augmented model is never written (the graph below is run from memory).
        calibrator = MinMaxCalibrater(Path(model_path), list(op_types) if op_types else None,
                                      augmented_model_path=str(Path(tmp) / "unused.onnx"))
    model = calibrator.model
    tensors, value_infos = calibrator.select_tensors_to_calibrate(model)
    names = sorted(tensors)
    graph = model.graph
    taken = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    outputs: list[str] = []
    for tensor in names:
        elem = value_infos[tensor].type.tensor_type.elem_type
        for op in ("ReduceMin", "ReduceMax"):
            out = f"{tensor}_{op}"
            while out in taken:  # never shadow a tensor of the graph
                out += "_"
            taken.add(out)
            # keepdims=1 over every axis, as the calibrator's (its Reshape to [-1] is done below).
            graph.node.append(helper.make_node(op, [tensor], [out], keepdims=1, name=out))
            graph.output.append(helper.make_tensor_value_info(out, elem, None))
            outputs.append(out)
    serialized = model.SerializeToString()
    del model, graph, calibrator  # the sessions hold the graph now; the proto's copy is ~45 MB for L1
    runs = cpu_runs(serialized, samples, outputs=outputs, optimize=False)
    del serialized
    ranges = {}
    for k, tensor in enumerate(names):
        # np.nanmin/np.nanmax over the per-sample values, as MinMaxCalibrater.compute_data.
        lowest = np.nanmin([r[2 * k].reshape(-1) for r in runs], axis=0)
        highest = np.nanmax([r[2 * k + 1].reshape(-1) for r in runs], axis=0)
        ranges[tensor] = (lowest, highest)
    return TensorsData(CalibrationMethod.MinMax, ranges)


def check_reproducible(config) -> None:
    """Raise when a StaticQuantConfig asks for a calibration `minmax_ranges` does not compute."""
    from onnxruntime.quantization.calibrate import CalibrationMethod

    asked = [k for k in UNSUPPORTED_CALIBRATION_OPTIONS if (config.extra_options or {}).get(k)]
    if config.calibrate_method != CalibrationMethod.MinMax or asked:
        raise ValueError(f"minmax_ranges computes plain MinMax ranges, not {config.calibrate_method} {asked}")
