"""Where does the compiled binary stop computing what the QDQ model computes?

Every quantized activation of a QDQ graph (the output of each QuantizeLinear that follows a
compute op) is made a graph output; the HTP emulator and the CPU EP run that graph on one
input, and each tensor is compared (the CPU as reference). Two signatures name a culprit:

- a per-channel affine op (BatchNormalization) whose own map differs: each side's per-channel
  slope and intercept fitted against that side's own input, so upstream noise cancels and
  what is left is what the op itself computes differently (a flipped bias shows as the whole
  channel shifted by twice the bias). This is also a verify criterion (`channel_maps`);
- an op whose HTP-vs-CPU SQNR falls more than `DROP_DB` below its inputs' (input agreement
  capped per bit width: two correct kernels already differ by rounding).

Ops are ranked: map mismatches first (largest first), then drops (largest first): the first
op of the graph to depart is often a noisy attention op that departs in clean runs too.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from ..core.onnx_graph import constant_array, readers
from ..htp.session import HtpTarget, module_of
from ..measure.agreement import cpu_session, sqnr_db
from ..measure.attribution import attribute_op
from .native_io import native_io

DROP_DB = 10.0
# Rounding differences between two correct kernels already cost this much on one tensor; an
# input agreeing better than this does not make a normal output look like a drop.
AGREEMENT_CAP_DB = {8: 40.0, 16: 70.0}
# Ops computing out[:, c] = a_c * in[:, c] + b_c, whose map can be fitted per channel.
PER_CHANNEL_AFFINE = frozenset({"BatchNormalization"})
# The largest per-channel map mismatch (the two sides' fitted maps applied to the CPU input: the
# difference's power in the worst channel over the output tensor's signal power) a correct
# binary shows. Measured (tests/bench/results/fidelity_matrix.json, XS and L1 at 224, realistic
# weights): flipped BN biases -6.9 dB or higher, clean BNs -35.6 dB or lower (w8a8; w8a16 -41.6);
# XS at 64 px (tests/test_verify_criteria.py's cases): flipped -7.5 dB and up, clean -29 dB.
MAX_MAP_MISMATCH_DB = -20.0
# A map fitted on fewer values per channel than this absorbs the noise that reached the op: on a
# 1x1 map the "fit" is the value itself, and a clean BN with 19-30 dB input noise shows -8 to
# -21 dB (false failures); on 2x2 (the head BN of XS at 64 px) clean stays near -33 dB and a flip
# above -15 dB. Ops on smaller maps are recorded as not checked, never as passing.
MIN_FIT_VALUES = 4


@dataclass
class Tap:
    tensor: str  # the float tensor name (the compute op's output)
    quantized: str  # the QuantizeLinear output made a graph output
    producer: onnx.NodeProto | None
    scale: np.ndarray
    zero_point: np.ndarray
    bits: int


def _const(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    return constant_array(next((i for i in model.graph.initializer if i.name == name), None),
                          next((n for n in model.graph.node if name in n.output), None))


def taps(model: onnx.ModelProto) -> list[Tap]:
    """The quantized activations of a QDQ graph, in execution order, but those a convert reads
    (DequantizeLinear then QuantizeLinear to the other width, where a mixed-precision export's 8-
    and 16-bit units meet): as a graph output, such a tensor keeps the HTP from fusing the convert
    (measured: the encoder block with its attention's final piece alone at 16 bits, whose
    Transpose before the convert the HTP then rejects)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    read_by = readers(model.graph)

    def converted(q: onnx.NodeProto) -> bool:
        return any(r.op_type == "DequantizeLinear" and any(c.op_type == "QuantizeLinear" for c in read_by.get(r.output[0], []))
                   for r in read_by.get(q.output[0], []))

    found = []
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear" or converted(n):
            continue
        scale = _const(model, n.input[1])
        zp = _const(model, n.input[2]) if len(n.input) > 2 and n.input[2] else np.zeros((), np.uint8)
        if scale is None or zp is None or scale.size != 1:
            continue
        src = producer.get(n.input[0])
        found.append(Tap(n.input[0], n.output[0], src, scale, zp, 8 * zp.dtype.itemsize))
    return found


def ranked_sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """`agreement.sqnr_db` as a number to rank tensors by: identical is +inf (nothing lost), an
    all-zero reference with an error -inf (nothing kept)."""
    db = sqnr_db(reference, candidate)
    if db is not None:
        return db
    return math.inf if np.array_equal(reference, candidate) else -math.inf


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


def as_native_io(model: onnx.ModelProto, sample: np.ndarray) -> np.ndarray:
    """`model` rewritten in place to native uint8 NHWC I/O, as the compile stage compiles an
    `--io uint8-nhwc` export (`native_io`), and `sample` (float NCHW) as that graph's input: the
    per-tensor runs then feed what the export's binary is fed."""
    (feed,) = [t for t in native_io(model) if t.role == "input"]
    return feed.from_float(sample)


def run_taps(model: onnx.ModelProto, sample: np.ndarray, target: HtpTarget, chosen: list[Tap] | None = None):
    """(taps, CPU values, HTP values) of each tap of the QDQ `model` (loaded once by the caller,
    which reads it too), dequantized, on one input. The tapped graph is compiled, and run once on
    the HTP emulator, in a compile worker, as every compile is: a signal stops it."""
    from ..htp.compile import compile_in_worker
    from ..htp.record import HTP_OUTPUTS, CompileSpec
    from ..htp.workers import started_ahead

    chosen = taps(model) if chosen is None else chosen
    # The compile's worker: its start-up beside the tapped graph's writing and CPU run.
    with started_ahead("compile"), tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tapped.onnx"
        onnx.save(tapped_model(model, chosen), str(path))
        feed = {model.graph.input[0].name: sample}
        names = [t.quantized for t in chosen]
        cpu = cpu_session(path).run(names, feed)
        np.savez(Path(tmp) / "feed.npz", **feed)
        compiled = Path(tmp) / "compiled"
        compile_in_worker(CompileSpec(model=path, out_dir=compiled, target=target), run_on=Path(tmp) / "feed.npz")
        with np.load(compiled / HTP_OUTPUTS) as outputs:
            htp = [outputs[n] for n in names]
    return chosen, [_dequantize(t, v) for t, v in zip(chosen, cpu, strict=True)], [_dequantize(t, v) for t, v in zip(chosen, htp, strict=True)]


def _channels(x: np.ndarray) -> np.ndarray:
    """(C, positions) view of an N x C x ... tensor, in float64."""
    return np.moveaxis(np.asarray(x, dtype=np.float64), 1, 0).reshape(x.shape[1], -1)


def affine_fits(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (axis 1): least-squares slope and intercept of y = a*x + b over every other
    axis. A channel whose input is constant gets slope 0 and its mean as intercept."""
    xs, ys = _channels(x), _channels(y)
    mx, my = xs.mean(axis=1), ys.mean(axis=1)
    var = ((xs - mx[:, None]) ** 2).mean(axis=1)
    cov = ((xs - mx[:, None]) * (ys - my[:, None])).mean(axis=1)
    slope = np.divide(cov, var, out=np.zeros_like(cov), where=var > 0)
    return slope, my - slope * mx


@dataclass(frozen=True)
class ChannelMap:
    """How differently the HTP computes one per-channel affine op (pure figures, no graph)."""

    channel: int  # the channel whose map differs most
    mismatch_db: float  # that difference's power over the output's signal power (dB); -inf: identical
    cpu: tuple[float, float]  # (slope, intercept) fitted on the CPU, against the CPU's input
    htp: tuple[float, float]  # ... on the HTP, against the HTP's input


def channel_map(x_cpu: np.ndarray, y_cpu: np.ndarray, x_htp: np.ndarray, y_htp: np.ndarray) -> ChannelMap:
    """Fit each side's per-channel map against its own input (so what reached the op already
    different cancels), apply both to the CPU's input, and report the worst channel."""
    a_cpu, b_cpu = affine_fits(x_cpu, y_cpu)
    a_htp, b_htp = affine_fits(x_htp, y_htp)
    diff = (a_htp - a_cpu)[:, None] * _channels(x_cpu) + (b_htp - b_cpu)[:, None]
    power = (diff**2).mean(axis=1)
    c = int(np.argmax(power))
    signal = float(np.mean(np.asarray(y_cpu, dtype=np.float64) ** 2))
    if power[c] == 0:
        db = -math.inf
    else:
        db = 10 * math.log10(power[c] / signal) if signal > 0 else math.inf
    return ChannelMap(c, db, (float(a_cpu[c]), float(b_cpu[c])), (float(a_htp[c]), float(b_htp[c])))


@dataclass(frozen=True)
class TensorFigures:
    """One tapped op's HTP-vs-CPU figures: what ranking and verify read."""

    index: int  # position among the taps (execution order)
    sqnr_db: float  # its output, HTP vs CPU
    inputs_sqnr_db: float  # its quantized inputs' lowest (inf: no tapped input)
    bits: int
    channel_map: ChannelMap | None = None  # per-channel affine ops only

    @property
    def drop_db(self) -> float:
        """How far the output falls below its inputs' agreement (capped: see AGREEMENT_CAP_DB)."""
        return min(self.inputs_sqnr_db, AGREEMENT_CAP_DB.get(self.bits, 40.0)) - self.sqnr_db

    @property
    def map_mismatch(self) -> bool:
        return self.channel_map is not None and self.channel_map.mismatch_db > MAX_MAP_MISMATCH_DB


def rank(figures: list[TensorFigures]) -> list[TensorFigures]:
    """Suspects, most likely culprit first: ops whose own per-channel map differs (largest
    mismatch first), then ops falling more than DROP_DB below their inputs (largest drop first)."""
    maps = sorted((f for f in figures if f.map_mismatch), key=lambda f: -f.channel_map.mismatch_db)
    drops = sorted((f for f in figures if not f.map_mismatch and f.drop_db > DROP_DB), key=lambda f: -f.drop_db)
    return maps + drops


def _tap_inputs(model: onnx.ModelProto, chosen: list[Tap]) -> dict[str, int]:
    """DequantizeLinear output -> index of the tap it dequantizes."""
    by_q = {t.quantized: k for k, t in enumerate(chosen)}
    return {n.output[0]: by_q[n.input[0]] for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in by_q}


def tensor_figures(model: onnx.ModelProto, chosen: list[Tap], cpu: list, htp: list) -> list[TensorFigures]:
    """Figures of every tapped compute op (not the DequantizeLinear of a weight or input)."""
    dq_source = _tap_inputs(model, chosen)
    sq = [ranked_sqnr_db(c, h) for c, h in zip(cpu, htp, strict=True)]
    out = []
    for k, t in enumerate(chosen):
        if t.producer is None or t.producer.op_type == "DequantizeLinear":
            continue
        inputs = [dq_source[i] for i in t.producer.input if i in dq_source]
        cmap = None
        if (t.producer.op_type in PER_CHANNEL_AFFINE and t.producer.input[0] in dq_source
                and fits_channel_map(cpu[k].shape)):
            i = dq_source[t.producer.input[0]]
            if cpu[i].shape == cpu[k].shape:
                cmap = channel_map(cpu[i], cpu[k], htp[i], htp[k])
        out.append(TensorFigures(k, sq[k], min([sq[i] for i in inputs], default=math.inf), t.bits, cmap))
    return out


def fits_channel_map(shape: tuple[int, ...]) -> bool:
    """Whether a per-channel op's output of `shape` has enough values per channel to fit its map."""
    return len(shape) >= 2 and shape[1] > 0 and math.prod(shape) // shape[1] >= MIN_FIT_VALUES


def per_channel_ops(model: onnx.ModelProto) -> list[str]:
    """Names of the graph's per-channel affine ops (what the channel-map check looks at)."""
    return [n.name for n in model.graph.node if n.op_type in PER_CHANNEL_AFFINE]


def worst_channel_map(chosen: list[Tap], figures: list[TensorFigures]) -> dict:
    """The verify record of the channel-map check: ops checked and the worst one (its figure None
    when not finite: -inf for identical maps, inf against an all-zero reference)."""
    checked = [f for f in figures if f.channel_map is not None]
    unchecked = [chosen[f.index].producer.name for f in figures
                 if f.channel_map is None and chosen[f.index].producer.op_type in PER_CHANNEL_AFFINE]
    if not checked:
        return {"ops_checked": 0, "ops_unchecked": len(unchecked), "unchecked_nodes": unchecked,
                "max_mismatch_db": MAX_MAP_MISMATCH_DB}
    worst = max(checked, key=lambda f: f.channel_map.mismatch_db)
    return {"ops_checked": len(checked), "ops_unchecked": len(unchecked), "unchecked_nodes": unchecked,
            "max_mismatch_db": MAX_MAP_MISMATCH_DB,
            "worst_mismatch_db": _finite(worst.channel_map.mismatch_db), "worst_node": chosen[worst.index].producer.name,
            "worst_channel": worst.channel_map.channel}


def _channel_sqnr(cpu: np.ndarray, htp: np.ndarray) -> dict | None:
    """The channel (axis 1) that agrees least, and the median channel's agreement."""
    if cpu.ndim < 2:
        return None
    per = [ranked_sqnr_db(cpu[:, i], htp[:, i]) for i in range(cpu.shape[1])]
    worst = int(np.argmin(per))
    return {"channel": worst, "channel_sqnr_db": _finite(per[worst]), "median_channel_sqnr_db": _finite(float(np.median(per)))}


def _finite(v: float) -> float | None:
    return round(v, 2) if math.isfinite(v) else None


def locate(qdq: Path, sample: np.ndarray, target: HtpTarget, variant=None, *, native: bool = False) -> dict:
    """The op most likely to be where the HTP departs from the CPU (see `rank`). `native`: the
    binary has native uint8 NHWC I/O (`as_native_io`)."""
    model = onnx.load(str(qdq))
    if native:
        sample = as_native_io(model, sample)
    chosen, cpu, htp = run_taps(model, sample, target)
    return divergence(model, chosen, cpu, htp, variant)


def divergence(model: onnx.ModelProto, chosen: list[Tap], cpu: list, htp: list, variant=None,
               figures: list[TensorFigures] | None = None) -> dict:
    """`locate` on tensors already run: {"found": False, ...} when no op stands out."""
    figures = tensor_figures(model, chosen, cpu, htp) if figures is None else figures
    suspects = rank(figures)
    if not suspects:
        finite = [f.sqnr_db for f in figures if math.isfinite(f.sqnr_db)]
        return {"found": False, "tensors_compared": len(chosen), "min_sqnr_db": _finite(min(finite)) if finite else None}
    top = suspects[0]
    finding = _finding(chosen[top.index], top, cpu[top.index], htp[top.index], variant)
    finding["suspects"] = [_suspect(chosen[f.index], f) for f in suspects[:5]]
    return finding


def _suspect(t: Tap, f: TensorFigures) -> dict:
    if f.map_mismatch:
        return {"node": t.producer.name, "why": "channel map", "mismatch_db": _finite(f.channel_map.mismatch_db)}
    return {"node": t.producer.name, "why": "drop", "drop_db": _finite(f.drop_db)}


def _finding(t: Tap, f: TensorFigures, cpu: np.ndarray, htp: np.ndarray, variant) -> dict:
    node = t.producer
    where = {"node": node.name, "op_type": node.op_type, "module": module_of(node.name or t.tensor),
             "sqnr_db": _finite(f.sqnr_db), "inputs_sqnr_db": _finite(f.inputs_sqnr_db),
             "why": "channel map" if f.map_mismatch else "drop"}
    where.update(block_of(node.name or t.tensor, variant))
    if f.map_mismatch:  # a BN that is a suspect only for its drop keeps its fitted maps out of the message
        m = f.channel_map
        where.update({"channel": m.channel, "map_mismatch_db": _finite(m.mismatch_db),
                      "fit_cpu": {"slope": round(m.cpu[0], 5), "intercept": round(m.cpu[1], 5)},
                      "fit_htp": {"slope": round(m.htp[0], 5), "intercept": round(m.htp[1], 5)}})
    else:
        where.update(_channel_sqnr(cpu, htp) or {})
    return {"found": True, **where}


def block_of(name: str, variant) -> dict:
    if variant is None:
        return {}

    try:
        a = attribute_op(name, [], variant)
    except Exception:  # a name that mentions no block of this variant
        return {}
    return {"block": a.block, "block_kind": a.kind, "part": a.part}


def describe(finding: dict) -> str:
    """One phrase for an error message: where it went wrong and how."""
    if not finding.get("found"):
        return (f"no single op stands out (every tensor within {DROP_DB:g} dB of its inputs, every per-channel map "
                "the same on both sides)")
    kind = {"swiftformer_encoder": "SwiftFormerEncoder", "conv_encoder": "ConvEncoder"}.get(finding.get("block_kind") or "", finding.get("block_kind") or "")
    place = f"{finding['block']} {kind}".strip() + (f" / {finding['part']}" if finding.get("part") else "") if finding.get("block") else finding["module"]
    text = (f"the HTP departs at {place}: {finding['op_type']} {finding['node']} "
            f"(HTP vs CPU SQNR {finding['sqnr_db']} dB, its inputs {finding['inputs_sqnr_db']} dB)")
    if "fit_htp" in finding:
        text += (f", channel {finding['channel']} maps differently: bias {finding['fit_cpu']['intercept']:+.4g} on the "
                 f"CPU vs {finding['fit_htp']['intercept']:+.4g} on the HTP, slope {finding['fit_cpu']['slope']:.4g} vs "
                 f"{finding['fit_htp']['slope']:.4g}")
    elif "channel" in finding:
        text += f", worst channel {finding['channel']} ({finding['channel_sqnr_db']} dB)"
    return text
