"""Stage `fold_bn`: every BatchNormalization out of the float graph, exactly.

A standalone BN in a QDQ graph is lowered by onnxruntime-qnn through a path that can flip
the sign of one channel's bias inside the context binary (`bn_guard`). Folding removes the
op before quantization, and costs nothing in float: a BN is a per-channel affine map
y = s*x + t (s = gamma/sqrt(var+eps), t = beta - mean*s), so it folds

- into the Conv that produces its input (onnxsim already does this for most),
- into the 1x1 Convs that consume its output (SwiftFormerEncoder `mlp.norm` -> `fc1`),
- through a Reshape / spatial ReduceMean into the Gemms after it (the head BN commutes
  with the global mean, then folds into `fc` and `dist_fc`),
- and otherwise becomes a depthwise 1x1 Conv (a plain conv on the HTP, quantized like any).

Node names keep their module paths: the convs that absorb a BN keep theirs, a depthwise
replacement is named `<BN module path>/Conv`. Per-block attribution reads these names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..core.onnx_graph import constant_array
from .onnx_export import op_histogram


@dataclass
class Fold:
    batchnorm: str  # the BN node's name
    how: str  # "into_producer_conv" | "into_consumer_conv" | "into_gemm_through_mean" | "depthwise_conv"
    into: list[str]  # the nodes that now carry it


@dataclass
class FoldReport:
    nodes_before: int = 0
    nodes: int = 0
    folds: list[Fold] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"nodes_before": self.nodes_before, "nodes": self.nodes,
                "batchnorms_folded": len(self.folds), "folds": [asdict(f) for f in self.folds]}


class _Graph:
    """Producer/consumer indices and initializer access over a ModelProto, kept up to date."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.g = model.graph
        self.inits = {i.name: i for i in self.g.initializer}
        self.outputs = {o.name for o in self.g.output}

    def producer(self, name: str) -> onnx.NodeProto | None:
        return next((n for n in self.g.node if name in n.output), None)

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return [n for n in self.g.node if name in n.input]

    def array(self, name: str) -> np.ndarray | None:
        return constant_array(self.inits.get(name), None if name in self.inits else self.producer(name))

    def uses(self, name: str) -> int:
        return sum(list(n.input).count(name) for n in self.g.node)

    def set_array(self, node: onnx.NodeProto, index: int, value: np.ndarray, suffix: str) -> None:
        """Give `node` input `index` the constant `value`: in place if nothing else reads the
        old initializer, else as a new one."""
        old = node.input[index] if index < len(node.input) else ""
        value = value.astype(np.float32)
        if old and old in self.inits and self.uses(old) == 1:
            self.inits[old].CopyFrom(numpy_helper.from_array(value, old))
            return
        name = self._fresh(f"{node.name or 'node'}_{suffix}")
        init = numpy_helper.from_array(value, name)
        self.g.initializer.append(init)
        self.inits[name] = self.g.initializer[-1]
        while len(node.input) <= index:
            node.input.append("")
        node.input[index] = name

    def _fresh(self, base: str) -> str:
        taken = set(self.inits) | {o for n in self.g.node for o in n.output}
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        return name

    def remove(self, node: onnx.NodeProto) -> None:
        self.g.node.remove(node)

    def rewire(self, old: str, new: str) -> None:
        for n in self.g.node:
            for i, name in enumerate(n.input):
                if name == old:
                    n.input[i] = new


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _affine(g: _Graph, bn: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) of the BN in float64, or None if its parameters are not constants."""
    params = [g.array(n) for n in bn.input[1:5]]
    if any(p is None for p in params):
        return None
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    s = gamma / np.sqrt(var + float(_attr(bn, "epsilon", 1e-5)))
    return s, beta - mean * s


def _is_pointwise_conv(g: _Graph, n: onnx.NodeProto, channels: int) -> bool:
    w = g.array(n.input[1]) if len(n.input) > 1 else None
    return (n.op_type == "Conv" and w is not None and w.ndim >= 3 and w.shape[1] == channels
            and all(k == 1 for k in w.shape[2:]) and _attr(n, "group", 1) == 1
            and not any(_attr(n, "pads", [0]) or [0]) and _attr(n, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"))


def _into_producer(g: _Graph, bn: onnx.NodeProto, s, t) -> Fold | None:
    x = bn.input[0]
    conv = g.producer(x)
    if conv is None or conv.op_type != "Conv" or len(g.consumers(x)) != 1 or x in g.outputs:
        return None
    w = g.array(conv.input[1])
    if w is None or w.shape[0] != s.size:
        return None
    b = g.array(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(s.size)
    if b is None:
        return None
    g.set_array(conv, 1, w.astype(np.float64) * s.reshape(-1, *[1] * (w.ndim - 1)), "weight")
    g.set_array(conv, 2, b.astype(np.float64) * s + t, "bias")
    conv.output[0] = bn.output[0]
    g.remove(bn)
    return Fold(bn.name, "into_producer_conv", [conv.name])


def _into_consumer_convs(g: _Graph, bn: onnx.NodeProto, s, t) -> Fold | None:
    y = bn.output[0]
    users = g.consumers(y)
    if not users or y in g.outputs or not all(_is_pointwise_conv(g, n, s.size) and n.input[0] == y for n in users):
        return None
    for conv in users:
        w = g.array(conv.input[1]).astype(np.float64)
        b = g.array(conv.input[2]).astype(np.float64) if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0])
        w2 = w.reshape(w.shape[0], w.shape[1])
        g.set_array(conv, 1, w * s.reshape(1, -1, *[1] * (w.ndim - 2)), "weight")
        g.set_array(conv, 2, b + w2 @ t, "bias")
    g.rewire(y, bn.input[0])
    g.remove(bn)
    return Fold(bn.name, "into_consumer_conv", [n.name for n in users])


def _mean_chain(g: _Graph, y: str, channels: int) -> tuple[list[onnx.NodeProto], str] | None:
    """Reshape/ReduceMean nodes after the BN that keep the channel axis (1) and average over
    the others beyond it, ending in a (batch, channels) tensor: the BN's affine map commutes."""
    chain, cur, reduced = [], y, False
    while True:
        users = g.consumers(cur)
        if len(users) != 1 or cur in g.outputs:
            break
        n = users[0]
        if n.op_type == "Reshape":
            shape = g.array(n.input[1])
            if shape is None or len(shape) < 2 or shape[1] != channels or shape[0] not in (0, 1, -1):
                return None
        elif n.op_type == "ReduceMean":
            axes = g.array(n.input[1]) if len(n.input) > 1 and n.input[1] else _attr(n, "axes")
            if axes is None or any(int(a) in (0, 1) for a in np.asarray(axes).ravel()) or _attr(n, "keepdims", 1):
                return None
            reduced = True
        else:
            break
        chain.append(n)
        cur = n.output[0]
    return (chain, cur) if reduced else None


def _into_gemms_through_mean(g: _Graph, bn: onnx.NodeProto, s, t) -> Fold | None:
    found = _mean_chain(g, bn.output[0], s.size)
    if found is None:
        return None
    _, pooled = found
    users = g.consumers(pooled)
    ok = users and pooled not in g.outputs and all(
        n.op_type == "Gemm" and n.input[0] == pooled and not _attr(n, "transA", 0)
        and _attr(n, "alpha", 1.0) == 1.0 and _attr(n, "beta", 1.0) == 1.0 and g.array(n.input[1]) is not None
        and (len(n.input) < 3 or not n.input[2] or g.array(n.input[2]) is not None) for n in users)
    if not ok:
        return None
    for gemm in users:
        w = g.array(gemm.input[1]).astype(np.float64)
        wt = w if _attr(gemm, "transB", 0) else w.T  # (out, in)
        c = g.array(gemm.input[2]).astype(np.float64) if len(gemm.input) > 2 and gemm.input[2] else np.zeros(wt.shape[0])
        scaled = wt * s.reshape(1, -1)
        g.set_array(gemm, 1, scaled if _attr(gemm, "transB", 0) else scaled.T, "weight")
        g.set_array(gemm, 2, np.broadcast_to(c, (wt.shape[0],)) + wt @ t, "bias")
    g.rewire(bn.output[0], bn.input[0])
    g.remove(bn)
    return Fold(bn.name, "into_gemm_through_mean", [n.name for n in users])


def _as_depthwise_conv(g: _Graph, bn: onnx.NodeProto, s, t, rank: int) -> Fold:
    prefix = bn.name.rsplit("/", 1)[0] if "/" in bn.name else bn.name
    name = g._fresh(f"{prefix}/Conv")
    w_name, b_name = g._fresh(f"{name}.weight"), g._fresh(f"{name}.bias")
    g.g.initializer.extend([
        numpy_helper.from_array(s.reshape(-1, 1, *[1] * (rank - 2)).astype(np.float32), w_name),
        numpy_helper.from_array(t.astype(np.float32), b_name),
    ])
    g.inits.update({i.name: i for i in g.g.initializer[-2:]})
    conv = helper.make_node("Conv", [bn.input[0], w_name, b_name], [bn.output[0]], name=name,
                            group=int(s.size), kernel_shape=[1] * (rank - 2))
    index = list(g.g.node).index(bn)
    g.remove(bn)
    g.g.node.insert(index, conv)
    return Fold(bn.name, "depthwise_conv", [name])


def _rank(model: onnx.ModelProto, name: str) -> int | None:
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            return len(vi.type.tensor_type.shape.dim)
    return None


def fold_batchnorms(model: onnx.ModelProto) -> tuple[FoldReport, onnx.ModelProto]:
    """Fold every BatchNormalization of `model`; returns what moved where and the new model."""
    model = onnx.shape_inference.infer_shapes(model) if not model.graph.value_info else model
    g = _Graph(model)
    report = FoldReport(nodes_before=len(model.graph.node))
    for bn in [n for n in model.graph.node if n.op_type == "BatchNormalization"]:
        if len(bn.output) > 1 and any(bn.output[1:]):
            continue  # training-mode BN: not an inference graph's
        affine = _affine(g, bn)
        if affine is None:
            continue
        s, t = affine
        fold = (_into_producer(g, bn, s, t) or _into_consumer_convs(g, bn, s, t)
                or _into_gemms_through_mean(g, bn, s, t))
        if fold is None:
            rank = _rank(model, bn.input[0]) or 4
            fold = _as_depthwise_conv(g, bn, s, t, rank)
        report.folds.append(fold)
    live = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    keep = [vi for vi in model.graph.value_info if vi.name in live]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    used = {i for n in model.graph.node for i in n.input}
    unused = [i for i in model.graph.initializer if i.name not in used]
    for i in unused:
        model.graph.initializer.remove(i)
    report.nodes = len(model.graph.node)
    return report, model


def fold_stage(src: Path, out: Path) -> dict:
    """Read the simplified float ONNX, fold its BatchNorms, write it, and say what moved where."""
    model = onnx.load(str(src))
    report, model = fold_batchnorms(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return {**report.as_dict(), "op_types": op_histogram(model)}
