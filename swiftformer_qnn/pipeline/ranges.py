"""Activation ranges for static quantization, by one of four methods (`CalibrationMethod`).

MinMax: onnxruntime's `MinMaxCalibrater` makes a ReduceMin and a ReduceMax of every float
tensor of the op types to quantize a graph output, runs that graph as written (ORT_DISABLE_ALL)
once per calibration sample, on one session, and keeps the lowest minimum and the highest
maximum over the samples. `minmax_ranges` runs the same passes (the tensors its own
`select_tensors_to_calibrate` picks, the same reductions, the same optimization level and
intra-op thread count, batch 1) on a session whose threads do not spin between ops, and reduces
them the same way, so each range is the same float32 value (tests/test_calibration_ranges.py
checks scales and zero points against onnxruntime's own calibrator on XS, L1 and the encoder
block). The quantizer then reads the ranges through onnxruntime's calibration cache instead of
calibrating again.

Percentile and Entropy: onnxruntime's `HistogramCalibrater` keeps every calibrated tensor of
every sample in memory (gigabytes for L1 at 64 photographs) and bins them all at once. Here a
first pass finds each tensor's extremes (the MinMax pass, plus min |x| for the percentile's
histogram of magnitudes), a second pass bins each sample into a histogram over exactly the
range onnxruntime's would span, and the counts add up to the same histogram. The percentile
threshold is onnxruntime's own code run on it; the entropy threshold is onnxruntime's search,
vectorised (its bin-merging loops in Python take about a second per tensor at 2048 bins).
The tests compare both with onnxruntime's calibrators.

Settings: Percentile as `quantize()` runs it for a QNN config (2048 bins of |x|, 99.999th
percentile, symmetric). Entropy with 2048 bins and 128 quantized bins: through `quantize()`
onnxruntime's Entropy keeps 128 bins, which leaves its threshold search one candidate, the whole
range, so its ranges are MinMax's; 2048 bins is `create_calibrator`'s `num_bins` option
(TensorRT's histogram size).

MSE: per tensor, the clipping range [a, b] that minimises the expected squared quantization
error at the precision's activation bit width n, over a grid of candidates: a = min(lo, 0) * i/K
and b = max(hi, 0) * j/K for i, j in 1..K (K = `MSE_GRID`, steps of 0.5% of the extremes seen;
the whole range is a candidate). The error is read from the signed histogram of the entropy
method (2048 bins over [-max|x|, max|x|]): values inside [a, b] cost the rounding noise
step^2/12 (step = (b - a) / (2^n - 1)), values outside their squared distance to the nearer end
(at bin centres). What Qualcomm's tools call an MSE range scheme; the grid is ours.

Not batched: a batch dimension on the calibration graph was measured slower per sample on
these 2-core machines (L1 at 224, batch 16, unoptimized graph), and onnxruntime's ReduceMean
over a batch of 16 rounds differently from 16 single passes (the head's pooled features moved
by one ulp), which would change the ranges.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.targets import CalibrationMethod
from ..measure.agreement import cpu_runs

# Calibration options of onnxruntime's MinMax calibrator that `minmax_ranges` does not reproduce.
UNSUPPORTED_CALIBRATION_OPTIONS = ("CalibTensorRangeSymmetric", "CalibMovingAverage")
# onnxruntime's Percentile defaults (create_calibrator), symmetric as quantize() leaves it.
PERCENTILE, PERCENTILE_BINS = 99.999, 2048
# Entropy: histogram bins (create_calibrator's num_bins; its default 128 degenerates to MinMax)
# and onnxruntime's default quantized bins.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128
MSE_GRID = 200  # candidate ends per side: multiples of 1/200 of the extreme seen


def _calibration_model(model_path: Path, op_types: Sequence[str] | None):
    """The graph as onnxruntime's calibrators load it (with shape inference), the tensors they
    calibrate (sorted) and their value infos."""
    from onnxruntime.quantization.calibrate import MinMaxCalibrater

    with tempfile.TemporaryDirectory(prefix="sfq-ranges-") as tmp:
        # onnxruntime's own loading and choice of tensors; its augmented model is never written
        # (the graph below is run from memory).
        calibrator = MinMaxCalibrater(Path(model_path), list(op_types) if op_types else None,
                                      augmented_model_path=str(Path(tmp) / "unused.onnx"))
    model = calibrator.model
    tensors, value_infos = calibrator.select_tensors_to_calibrate(model)
    return model, sorted(tensors), value_infos


def _reduce(model, names: list[str], value_infos, samples: np.ndarray, *, magnitude: bool = False,
            keep: bool = False):
    """Per tensor: the lowest and highest value over the samples (shape (1,), as onnxruntime's
    MinMax gives them), and with `magnitude` the smallest |value|. Adds the reductions to `model`,
    and empties it unless `keep` (the session holds the graph; the proto is ~45 MB for L1)."""
    from onnx import helper

    if samples.shape[0] < 1:
        raise ValueError("no calibration samples")
    graph = model.graph
    taken = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}

    def fresh(name: str) -> str:
        while name in taken:  # never shadow a tensor of the graph
            name += "_"
        taken.add(name)
        return name

    outputs: list[str] = []
    reductions = ("ReduceMin", "ReduceMax", "AbsReduceMin") if magnitude else ("ReduceMin", "ReduceMax")
    for tensor in names:
        elem = value_infos[tensor].type.tensor_type.elem_type
        for op in reductions:
            out = fresh(f"{tensor}_{op}")
            source = tensor
            if op == "AbsReduceMin":
                source = fresh(f"{tensor}_Abs")
                graph.node.append(helper.make_node("Abs", [tensor], [source], name=source))
                op = "ReduceMin"
            # keepdims=1 over every axis, as the calibrator's (its Reshape to [-1] is done below).
            graph.node.append(helper.make_node(op, [source], [out], keepdims=1, name=out))
            graph.output.append(helper.make_tensor_value_info(out, elem, None))
            outputs.append(out)
    # One session: a second one holds its own ~250 MB for L1 (weights, activations), and on a
    # loaded machine it gained 16% (21.6 s -> 18.2 s); not spinning is most of the gain.
    serialized = model.SerializeToString()
    if not keep:
        model.Clear()
    # Without the memory pattern: the calibration pass is the export's peak of memory, and the
    # pattern's block for every tensor of a run held 60 MB more for L1 at 224 (649 -> 589 MB peak
    # of the calibration alone), for the same ranges.
    runs = cpu_runs(serialized, samples, outputs=outputs, optimize=False, workers=1, memory_pattern=False)
    del serialized
    k = len(reductions)
    found = {}
    for i, tensor in enumerate(names):
        # np.nanmin/np.nanmax over the per-sample values, as MinMaxCalibrater.compute_data.
        found[tensor] = tuple(
            (np.nanmax if op == "ReduceMax" else np.nanmin)([r[k * i + j].reshape(-1) for r in runs], axis=0)
            for j, op in enumerate(reductions))
    return found


def minmax_ranges(model_path: Path, samples: np.ndarray, op_types: Sequence[str] | None):
    """onnxruntime `TensorsData` (MinMax) of `model_path`'s calibrated tensors over the batch-1
    samples of `samples` (N x input shape)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod as OrtMethod
    from onnxruntime.quantization.calibrate import TensorsData

    model, names, value_infos = _calibration_model(model_path, op_types)
    found = _reduce(model, names, value_infos, samples)
    return TensorsData(OrtMethod.MinMax, {t: found[t] for t in names})


def ranges_by_method(model_path: Path, samples: np.ndarray, op_types: Sequence[str] | None,
                     methods: Sequence[CalibrationMethod], bits: int = 8) -> dict:
    """Per method, onnxruntime `TensorsData` of `model_path`'s calibrated tensors (module
    docstring), every method from the same passes (one of reductions, one of histograms); `bits`:
    the activations' bit width, which only the MSE search depends on. MSE ranges are labelled
    MinMax: onnxruntime has no label for them, and its quantizer reads only the two ends."""
    from onnxruntime.quantization.calibrate import CalibrationMethod as OrtMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    methods = list(dict.fromkeys(methods))
    if methods == [CalibrationMethod.MINMAX]:
        return {CalibrationMethod.MINMAX: minmax_ranges(model_path, samples, op_types)}
    model, names, value_infos = _calibration_model(model_path, op_types)
    magnitude = CalibrationMethod.PERCENTILE in methods
    found = _reduce(model, names, value_infos, samples, magnitude=magnitude, keep=True)
    out = {}
    if CalibrationMethod.MINMAX in methods:
        out[CalibrationMethod.MINMAX] = TensorsData(OrtMethod.MinMax, {t: found[t][:2] for t in names})
    # Extremes as onnxruntime's HistogramCollector holds them: float32 scalars over all values.
    lowest = {t: found[t][0].reshape(-1)[0] for t in names}
    highest = {t: found[t][1].reshape(-1)[0] for t in names}
    kinds = {}  # histogram kind -> (bins, span per tensor)
    if magnitude:  # collect_absolute_value: |x| over [min |x|, max |x|]
        kinds["magnitude"] = (PERCENTILE_BINS, {t: (found[t][2].reshape(-1)[0], max(abs(lowest[t]), abs(highest[t])))
                                                for t in names})
    if {CalibrationMethod.ENTROPY, CalibrationMethod.MSE} & set(methods):
        # collect_value: x over +-max|x|, the bound a 0-d array of the tensor's type
        thresholds = {t: np.array(max(abs(lowest[t]), abs(highest[t])), dtype=lowest[t].dtype) for t in names}
        kinds["signed"] = (ENTROPY_BINS, {t: (-thresholds[t], thresholds[t]) for t in names})
    hists = _histograms(model, names, value_infos, samples, kinds) if kinds else {}
    if CalibrationMethod.PERCENTILE in methods:
        from onnxruntime.quantization.calibrate import HistogramCollector

        collector = HistogramCollector("percentile", True, PERCENTILE_BINS, ENTROPY_QUANTIZED_BINS, PERCENTILE, "same")
        collector.histogram_dict = {t: (*hists["magnitude"][t], lowest[t], highest[t]) for t in names}
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
            computed = collector.compute_collection_result()
        out[CalibrationMethod.PERCENTILE] = TensorsData(
            OrtMethod.Percentile, {t: TensorData(lowest=computed[t][0], highest=computed[t][1]) for t in names})
    if CalibrationMethod.ENTROPY in methods:
        out[CalibrationMethod.ENTROPY] = TensorsData(OrtMethod.Entropy, {
            t: TensorData(**dict(zip(("lowest", "highest"), entropy_threshold(
                *hists["signed"][t], lowest[t], highest[t], ENTROPY_QUANTIZED_BINS), strict=True)))
            for t in names})
    if CalibrationMethod.MSE in methods:
        out[CalibrationMethod.MSE] = TensorsData(OrtMethod.MinMax, {
            t: TensorData(**dict(zip(("lowest", "highest"), mse_range(
                *hists["signed"][t], lowest[t], highest[t], bits), strict=True)))
            for t in names})
    return out


def _histograms(model, names, value_infos, samples, kinds: dict):
    """Per histogram kind ("signed": the values, "magnitude": |values|, with its bins and span per
    tensor) and tensor, (counts, edges) over every sample, binned one sample at a time: the counts
    onnxruntime's single histogram of all samples has, since each value's bin depends only on the
    value and the span. One pass for every kind."""
    graph = model.graph
    present = {o.name for o in graph.output}
    for t in names:
        if t not in present:
            graph.output.append(value_infos[t])
    counts = {k: {t: np.zeros(bins, dtype=np.int64) for t in names} for k, (bins, _) in kinds.items()}
    edges: dict = {k: {} for k in kinds}

    def add(values: list[np.ndarray]) -> None:
        for t, v in zip(names, values, strict=True):
            v = v.reshape(-1)
            for kind, (bins, spans) in kinds.items():
                hist, edges[kind][t] = np.histogram(np.absolute(v) if kind == "magnitude" else v, bins,
                                                    range=spans[t])
                counts[kind][t] += hist

    cpu_runs(model.SerializeToString(), samples, outputs=names, optimize=False, workers=1, each=add,
             memory_pattern=False)
    return {k: {t: (counts[k][t], edges[k][t]) for t in names} for k in kinds}


def entropy_threshold(hist: np.ndarray, edges: np.ndarray, min_value, max_value, quantized_bins: int):
    """onnxruntime's `HistogramCollector.get_entropy_threshold` (the KL-divergence search over
    symmetric windows of the histogram), with its per-bin Python loops as array operations: the
    same integer counts, and onnxruntime's own smoothing and entropy on them, so the same float32
    divergences and the same threshold."""
    from onnxruntime.quantization.calibrate import entropy
    from onnxruntime.quantization.quant_utils import smooth_distribution

    num_bins = hist.size
    zero = num_bins // 2
    half = quantized_bins // 2
    dtype = edges.dtype
    candidates = range(half, zero + 1)
    divergence = np.zeros(len(candidates))
    thresholds = []
    below = np.concatenate(([0], np.cumsum(hist)))
    total = int(below[-1])
    for k, i in enumerate(candidates):
        start, end = zero - i, min(zero + i + 1, num_bins)
        thresholds.append((edges[start], edges[end]))
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += below[start]  # the outliers on each side go into the end bins
        p[-1] += total - below[end]
        nonzeros = (p != 0).astype(np.int64)
        merged = sliced.size // quantized_bins
        whole = quantized_bins * merged
        quantized = sliced[:whole].reshape(quantized_bins, merged).sum(axis=1)
        quantized[-1] += sliced[whole:].sum()
        norm = nonzeros[:whole].reshape(quantized_bins, merged).sum(axis=1)
        spread = np.zeros(quantized_bins, dtype=np.float64)
        np.divide(quantized, norm, out=spread, where=norm != 0)
        q = np.zeros(p.size, dtype=np.int64)
        # onnxruntime assigns quantized/norm into an int64 array: truncated, and 0 where norm is 0
        q[:whole] = np.repeat(spread, merged).astype(np.int64)
        p, q = smooth_distribution(p), smooth_distribution(q)
        divergence[k] = np.inf if p is None or q is None else np.array(entropy(p, q), dtype=dtype)
    lo, hi = thresholds[int(np.argmin(divergence))]
    if lo < min_value:
        lo = min_value
    if hi > max_value:
        hi = max_value
    return lo, hi


def mse_range(hist: np.ndarray, edges: np.ndarray, min_value, max_value, bits: int):
    """The [a, b] of least expected quantization MSE over the `MSE_GRID` candidates per side
    (module docstring), as float32 scalars. Ties go to the wider range."""
    lo, hi = min(float(min_value), 0.0), max(float(max_value), 0.0)
    if lo == hi:
        return np.float32(min_value), np.float32(max_value)
    centres = (edges[:-1].astype(np.float64) + edges[1:].astype(np.float64)) / 2
    n = hist.astype(np.float64)
    # Prefix sums of count, count*c and count*c^2 over the bins, for the clipped mass on each side.
    s0, s1, s2 = (np.concatenate(([0.0], np.cumsum(n * centres**p))) for p in (0, 1, 2))
    fractions = np.arange(MSE_GRID, 0, -1) / MSE_GRID  # widest first: argmin keeps the first of equals
    lows = lo * fractions if lo < 0 else np.zeros(1)
    highs = hi * fractions if hi > 0 else np.zeros(1)
    # Bins whose centre is below a (above b) are clipped to a (b).
    left = np.searchsorted(centres, lows, side="left")
    right = np.searchsorted(centres, highs, side="right")
    below_n, below_err = s0[left], s2[left] - 2 * lows * s1[left] + lows**2 * s0[left]
    above_n = s0[-1] - s0[right]
    above_err = (s2[-1] - s2[right]) - 2 * highs * (s1[-1] - s1[right]) + highs**2 * above_n
    step = (highs[None, :] - lows[:, None]) / (2**bits - 1)
    inside = s0[-1] - below_n[:, None] - above_n[None, :]
    cost = inside * step**2 / 12 + below_err[:, None] + above_err[None, :]
    i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
    return np.float32(lows[i]), np.float32(highs[j])


def check_reproducible(config) -> None:
    """Raise when a StaticQuantConfig asks for a calibration `minmax_ranges` does not compute."""
    from onnxruntime.quantization.calibrate import CalibrationMethod as OrtMethod

    asked = [k for k in UNSUPPORTED_CALIBRATION_OPTIONS if (config.extra_options or {}).get(k)]
    if config.calibrate_method != OrtMethod.MinMax or asked:
        raise ValueError(f"minmax_ranges computes plain MinMax ranges, not {config.calibrate_method} {asked}")
