"""Where does the compiled binary stop computing what the QDQ model computes?

Every quantized activation of a QDQ graph (the output of each QuantizeLinear that follows a
compute op) is made a graph output; the HTP emulator and the CPU EP run that graph on one
input, and each tensor is compared (the CPU as reference). The first op whose HTP-vs-CPU
SQNR falls more than `DROP_DB` below its inputs' names the culprit, with its module path,
block, and -- for BatchNorm and convolutions -- the channel that is off.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..qnn import HtpTarget, htp_session, module_of

DROP_DB = 10.0
# Rounding differences between two correct kernels already cost this much on one tensor; an
# input agreeing better than this does not make a normal output look like a drop.
AGREEMENT_CAP_DB = {8: 40.0, 16: 70.0}


@dataclass
class Tap:
    tensor: str  # the float tensor name (the compute op's output)
    quantized: str  # the QuantizeLinear output made a graph output
    producer: onnx.NodeProto | None
    scale: np.ndarray
    zero_point: np.ndarray
    bits: int


def _const(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for i in model.graph.initializer:
        if i.name == name:
            return numpy_helper.to_array(i)
    for n in model.graph.node:
        if n.op_type == "Constant" and name in n.output:
            return numpy_helper.to_array(n.attribute[0].t)
    return None


def taps(model: onnx.ModelProto) -> list[Tap]:
    """The quantized activations of a QDQ graph, in execution order."""
    producer = {o: n for n in model.graph.node for o in n.output}
    found = []
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        scale = _const(model, n.input[1])
        zp = _const(model, n.input[2]) if len(n.input) > 2 and n.input[2] else np.zeros((), np.uint8)
        if scale is None or zp is None or scale.size != 1:
            continue
        src = producer.get(n.input[0])
        found.append(Tap(n.input[0], n.output[0], src, scale, zp, 8 * zp.dtype.itemsize))
    return found


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    ref, err = reference.astype(np.float64), reference.astype(np.float64) - candidate.astype(np.float64)
    noise, signal = float(np.sum(err**2)), float(np.sum(ref**2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def _dequantize(tap: Tap, q: np.ndarray) -> np.ndarray:
    return (q.astype(np.float64) - float(tap.zero_point)) * float(tap.scale)


def tapped_model(model: onnx.ModelProto, chosen: list[Tap]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in chosen:
        if t.quantized not in have:
            elem = helper.np_dtype_to_tensor_dtype(t.zero_point.dtype)
            m.graph.output.append(helper.make_tensor_value_info(t.quantized, elem, None))
    return m


def run_taps(qdq: Path, sample: np.ndarray, target: HtpTarget, chosen: list[Tap] | None = None):
    """(taps, CPU values, HTP values) of each tap, dequantized, on one input; one HTP session."""
    import onnxruntime as ort

    model = onnx.load(str(qdq))
    chosen = taps(model) if chosen is None else chosen
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tapped.onnx"
        onnx.save(tapped_model(model, chosen), str(path))
        feed = {model.graph.input[0].name: sample}
        names = [t.quantized for t in chosen]
        so = ort.SessionOptions()
        so.log_severity_level = 3
        cpu = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(names, feed)
        htp = htp_session(path, target).run(names, feed)
    return chosen, [_dequantize(t, v) for t, v in zip(chosen, cpu, strict=True)], [_dequantize(t, v) for t, v in zip(chosen, htp, strict=True)]


def _channel_evidence(node: onnx.NodeProto, x: np.ndarray | None, cpu: np.ndarray, htp: np.ndarray) -> dict | None:
    """The channel that is off: per-channel SQNR of the output, and for a per-channel affine op
    (BatchNorm, depthwise conv) the intercept of out = a*in + b fitted on each side."""
    if cpu.ndim < 2:
        return None
    c = cpu.shape[1]
    per = [sqnr_db(cpu[:, i], htp[:, i]) for i in range(c)]
    worst = int(np.argmin(per))
    out = {"channel": worst, "channel_sqnr_db": _finite(per[worst]),
           "median_channel_sqnr_db": _finite(float(np.median(per)))}
    if x is not None and x.shape == cpu.shape and node.op_type in ("BatchNormalization", "Conv"):
        xi = x[:, worst].ravel()
        if np.ptp(xi) > 0:
            a_cpu, b_cpu = np.polyfit(xi, cpu[:, worst].ravel(), 1)
            a_htp, b_htp = np.polyfit(xi, htp[:, worst].ravel(), 1)
            out["fit_cpu"] = {"slope": round(float(a_cpu), 5), "intercept": round(float(b_cpu), 5)}
            out["fit_htp"] = {"slope": round(float(a_htp), 5), "intercept": round(float(b_htp), 5)}
    return out


def _finite(v: float) -> float | None:
    return round(v, 2) if math.isfinite(v) else None


def locate(qdq: Path, sample: np.ndarray, target: HtpTarget, variant=None) -> dict:
    """The first op whose HTP-vs-CPU SQNR drops more than DROP_DB below its inputs'."""
    chosen, cpu, htp = run_taps(qdq, sample, target)
    return first_divergence(onnx.load(str(qdq), load_external_data=False), chosen, cpu, htp, variant)


def first_divergence(model: onnx.ModelProto, chosen: list[Tap], cpu: list, htp: list, variant=None) -> dict:
    """`locate` on tensors already run: {"found": False, ...} when no op stands out."""
    dq_source = {}  # DequantizeLinear output -> the tap it dequantizes
    by_q = {t.quantized: k for k, t in enumerate(chosen)}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in by_q:
            dq_source[n.output[0]] = by_q[n.input[0]]
    sq = [sqnr_db(c, h) for c, h in zip(cpu, htp, strict=True)]
    for k, t in enumerate(chosen):
        if t.producer is None or t.producer.op_type == "DequantizeLinear":
            continue
        cap = AGREEMENT_CAP_DB.get(t.bits, 40.0)
        inputs = [dq_source[i] for i in t.producer.input if i in dq_source]
        in_db = min([sq[i] for i in inputs], default=math.inf)
        if min(in_db, cap) - sq[k] > DROP_DB:
            x = cpu[inputs[0]] if inputs else None
            return _finding(t, sq[k], in_db, x, cpu[k], htp[k], variant)
    return {"found": False, "tensors_compared": len(chosen), "min_sqnr_db": _finite(min(sq)) if sq else None}


def _finding(t: Tap, out_db, in_db, x, cpu, htp, variant) -> dict:
    node = t.producer
    where = {"node": node.name, "op_type": node.op_type, "module": module_of(node.name or t.tensor),
             "sqnr_db": _finite(out_db), "inputs_sqnr_db": _finite(in_db)}
    where.update(block_of(node.name or t.tensor, variant))
    evidence = _channel_evidence(node, x, cpu, htp)
    if evidence:
        where.update(evidence)
    return {"found": True, **where}


def block_of(name: str, variant) -> dict:
    if variant is None:
        return {}
    from ..profiling.attribution import attribute_op

    try:
        a = attribute_op(name, [], variant)
    except Exception:  # a name that mentions no block of this variant
        return {}
    return {"block": a.block, "block_kind": a.kind, "part": a.part}


def describe(finding: dict) -> str:
    """One phrase for an error message: where it went wrong and how."""
    if not finding.get("found"):
        return "no single op stands out (every tensor within 10 dB of its inputs)"
    kind = {"swiftformer_encoder": "SwiftFormerEncoder", "conv_encoder": "ConvEncoder"}.get(finding.get("block_kind") or "", finding.get("block_kind") or "")
    place = f"{finding['block']} {kind}".strip() + (f" / {finding['part']}" if finding.get("part") else "") if finding.get("block") else finding["module"]
    text = (f"first divergence at {place}: {finding['op_type']} {finding['node']} "
            f"(HTP vs CPU SQNR {finding['sqnr_db']} dB, its inputs {finding['inputs_sqnr_db']} dB)")
    if "channel" in finding:
        text += f", worst channel {finding['channel']} ({finding['channel_sqnr_db']} dB)"
        if "fit_htp" in finding:
            text += (f", bias {finding['fit_cpu']['intercept']:+.4g} on the CPU vs {finding['fit_htp']['intercept']:+.4g} "
                     "on the HTP")
    return text
