"""The BatchNorm bias-overflow guard for QDQ graphs the QNN EP will compile.

onnxruntime-qnn lowers a standalone `BatchNormalization` whose scale (gamma) is quantized
per-tensor by folding mean and variance into a per-channel scale `s = gamma/sqrt(var+eps)`
and bias `b = beta - mean*s`, then re-quantizing `b` to symmetric int32 with a scale of
exactly `max|b| / (2^31-1)` held in float32. When float32 rounds that scale down and the
largest |b| is positive, `round(b/scale)` is 2^31, the cast to int wraps, and that channel's
bias comes out as `-max|b|` in the context binary (docs/upstream/qnn-bn-bias-overflow.md).

`predict` finds those channels from the QDQ ONNX alone (numpy, milliseconds); `protect`
rewrites each affected BN so the EP never takes that path (its scale re-quantized per
channel, exactly: the EP then keeps the folded parameters in float), or refuses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..core.errors import BnOverflowError
from ..core.onnx_graph import constant_array

INT32_MAX = 2**31 - 1


def overflowing_channels(gamma, beta, mean, var, epsilon: float) -> list[int]:
    """Channels whose folded bias the EP's int32 re-quantization wraps to the opposite sign.

    Mirrors the EP's arithmetic: the fold in double, the range endpoints and the scale in
    float32, the division and rounding (half away from zero) in double.
    """
    g, b, m, v = (np.asarray(a, dtype=np.float64) for a in (gamma, beta, mean, var))
    s = g / np.sqrt(v + float(np.float32(epsilon)))
    folded = b - m * s
    absmax = max(abs(float(np.float32(min(folded.min(), 0.0)))), abs(float(np.float32(max(folded.max(), 0.0)))))
    if absmax == 0.0:
        return []
    scale = float(np.float32(2.0 * absmax / (2.0**32 - 2.0)))
    q = folded / scale
    rounded = np.sign(q) * np.floor(np.abs(q) + 0.5)
    return [int(c) for c in np.nonzero(rounded > INT32_MAX)[0]]


@dataclass
class BnFinding:
    node: str  # the BatchNormalization node's name
    channels: list[int]  # channels the EP would corrupt
    folded_bias: list[float]  # their folded bias (what the binary would hold with the sign flipped)
    action: str = "none"  # "rewritten" (scale re-quantized per channel) or "refused"

    def describe(self) -> str:
        chans = ", ".join(f"{c} (bias {b:+.4g} -> {-b:+.4g})" for c, b in zip(self.channels, self.folded_bias, strict=True))
        return f"{self.node} channel {chans}"


@dataclass
class GuardReport:
    batchnorms: int = 0  # BN nodes in the graph
    exposed: int = 0  # of those, with a per-tensor quantized scale (the EP path that can overflow)
    findings: list[BnFinding] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"batchnorms": self.batchnorms, "exposed_batchnorms": self.exposed,
                "corrupted_predicted": [asdict(f) for f in self.findings]}


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.inits = {i.name: i for i in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output}

    def const(self, name: str) -> np.ndarray | None:
        return constant_array(self.inits.get(name), self.producer.get(name))

    def dequantize_linear(self, name: str):
        """(DequantizeLinear node, values in double, per_tensor) for a dequantized constant, else None."""
        n = self.producer.get(name)
        if n is None or n.op_type != "DequantizeLinear":
            return None
        q, scale = self.const(n.input[0]), self.const(n.input[1])
        zp = self.const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if q is None or scale is None:
            return None
        zp = np.zeros_like(scale, dtype=np.int64) if zp is None else zp.astype(np.int64)
        per_tensor = scale.size == 1
        if not per_tensor:  # per-channel along the BN's (only) axis
            scale, zp = scale.reshape(-1), zp.reshape(-1)
        values = (q.astype(np.float64) - zp.astype(np.float64)) * scale.astype(np.float64)
        return n, values, per_tensor

    def value(self, name: str) -> np.ndarray | None:
        deq = self.dequantize_linear(name)
        if deq is not None:
            return deq[1]
        c = self.const(name)
        return None if c is None else c.astype(np.float64)


def _epsilon(node: onnx.NodeProto) -> float:
    for a in node.attribute:
        if a.name == "epsilon":
            return a.f
    return 1e-5


def predict(model: onnx.ModelProto) -> GuardReport:
    """Every BN of a QDQ graph whose bias the QNN EP will corrupt, and the channels."""
    g = _Graph(model)
    report = GuardReport()
    for node in model.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        report.batchnorms += 1
        gamma = g.dequantize_linear(node.input[1])
        if gamma is None or not gamma[2]:
            continue  # float or per-channel scale: the EP keeps the folded parameters in float
        report.exposed += 1
        beta, mean, var = (g.value(node.input[i]) for i in (2, 3, 4))
        if beta is None or mean is None or var is None:
            continue  # not constants: the EP rejects such a BN anyway
        channels = overflowing_channels(gamma[1], beta, mean, var, _epsilon(node))
        if channels:
            s = gamma[1] / np.sqrt(var + float(np.float32(_epsilon(node))))
            folded = beta - mean * s
            report.findings.append(BnFinding(node.name or node.output[0], channels,
                                             [round(float(folded[c]), 6) for c in channels]))
    return report


def _requantize_per_channel(g: _Graph, dq: onnx.NodeProto, values: np.ndarray) -> None:
    """Make `dq` dequantize `values` per channel (axis 0), symmetric int8 as QNN wants per-channel
    encodings: each channel is one number, so its own scale maps it exactly to +-127."""
    vals = values.astype(np.float32)
    scale = np.where(vals != 0, np.abs(vals) / 127.0, 1.0).astype(np.float32)
    q = (np.sign(vals) * 127).astype(np.int8)
    zp = np.zeros(vals.shape, np.int8)
    prefix = dq.input[0]
    names = (f"{prefix}_per_channel", f"{prefix}_per_channel_scale", f"{prefix}_per_channel_zero_point")
    for name, arr in zip(names, (q, scale, zp), strict=True):
        g.model.graph.initializer.append(numpy_helper.from_array(arr, name))
    del dq.input[:]
    dq.input.extend(names)
    for a in list(dq.attribute):
        if a.name == "axis":
            dq.attribute.remove(a)
    dq.attribute.append(onnx.helper.make_attribute("axis", 0))


def protect(model: onnx.ModelProto, *, rewrite: bool = True) -> GuardReport:
    """Predict, then rewrite every BN predicted to overflow (its scale re-quantized per channel,
    exact in float), or with `rewrite=False` refuse with the node, the channel and the fix.
    Checks the rewritten graph again: a graph known to be corrupted is never returned."""
    report = predict(model)
    if not report.findings:
        return report
    g = _Graph(model)
    by_name = {(n.name or n.output[0]): n for n in model.graph.node}
    for f in report.findings:
        dq = g.dequantize_linear(by_name[f.node].input[1])
        users = [n for n in model.graph.node if dq[0].output[0] in n.input]
        if not rewrite or len(users) != 1:
            f.action = "refused"
            raise BnOverflowError(
                f"onnxruntime-qnn would flip the bias sign of BatchNormalization {f.describe()}.",
                hint="Fold the BN into the neighbouring conv/linear, replace it by a depthwise 1x1 conv, "
                     "or quantize its scale per channel (quantization override {scale: [{'axis': 0}]}).")
        _requantize_per_channel(g, dq[0], dq[1])
        f.action = "rewritten"
    again = predict(model)
    if again.findings:
        raise BnOverflowError(f"BatchNormalization {again.findings[0].describe()} still overflows after the rewrite.",
                              hint="Fold the BN into a conv before quantizing.")
    return report


def guarded_model(model: Path, work: Path, name: str = ".model.bn-guarded.onnx") -> tuple[Path, dict]:
    """The BN-overflow guard before any compile: the model itself when no BatchNorm would be
    corrupted, else a rewritten copy `work/name` (raises BnOverflowError if it cannot be rewritten)."""
    proto = onnx.load(str(model))
    report = protect(proto)
    if not report.findings:
        return model, report.as_dict()
    out = work / name  # compiled, then removed: the manifest says what changed
    onnx.save(proto, str(out))
    return out, report.as_dict()


def describe_guard(guard: dict) -> str | None:
    """One line on what the guard rewrote, or None."""
    done = [f for f in guard.get("corrupted_predicted", []) if f["action"] == "rewritten"]
    if not done:
        return None
    what = "; ".join(f"{f['node']} channel {','.join(map(str, f['channels']))}" for f in done)
    return (f"BN guard: onnxruntime-qnn would flip the bias sign of {len(done)} BatchNormalization(s) ({what}); "
            "their scale was re-quantized per channel before compiling (exact in float).")
