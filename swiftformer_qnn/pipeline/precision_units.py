"""The units a mixed-precision assignment is made of, read from the float graph that gets quantized.

A unit is a block of the model (stem, each downsample, each ConvEncoder, the head) or a part of
a SwiftFormerEncoder block (`stage2.block9.local_representation`, `.attention`, `.mlp`): its
attention part costs most at 16 bits and its parts differ in what 16 bits gain (L1 224). Its
attention and mlp keep the residual add after them (`x + attention(x)`), so the parts still form
a chain: each reads only the previous unit's output. The standalone
SwiftFormerEncoder is one block, so its units are its parts (local_representation, attention,
mlp, and the residual glue). Each compute node goes to the unit `measure.attribution` places it
in, by its name or, for nodes a fusion renamed (QNN preprocessing's LpNormalization), by the
tensors it reads and writes. A unit at 16 bits means:
the activations its nodes write are 16-bit (8-bit weights everywhere); onnxruntime's
mixed-precision fixer adds the converts where 8- and 16-bit tensors meet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx

from ..core.errors import UsageError
from ..measure.attribution import ENCODER_BLOCK, PARTS, NodeTensors, attribute_op, model_blocks
from ..measure.schema import Attribution
from ..model.variants import BlockKind, Variant

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_SWIFTFORMER = BlockKind.SWIFTFORMER_ENCODER.value  # a block split into its parts
ATTENTION_PART = "attention"  # the part of a SwiftFormerEncoder that `ATTENTION_PIECES` cut
RESIDUAL = "residual"  # the standalone block's glue (residual adds, reshapes): no part names it
# Ops whose cost is their multiply-accumulates; every other op counts one per output element.
_MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True)
class PrecisionUnit:
    name: str  # a block id (`stage2.block8`), `<block id>.<part>` of a SwiftFormerEncoder, `encoder.<part>`
    kind: str | None
    nodes: tuple[str, ...]  # compute nodes, in graph order
    tensors: tuple[str, ...]  # the activations they write: what a 16-bit override names
    macs: int  # multiply-accumulates (one per output element for ops without weights)
    # A SwiftFormerEncoder attention's pieces (`ATTENTION_PIECES`), each a unit of its own the
    # search may put at 16 bits instead of the whole attention (`attention_pieces`).
    pieces: tuple[PrecisionUnit, ...] = ()


# The pieces of SwiftFormer's efficient additive attention, in execution order: the normalised
# query and key, the global query (the query weighted by w_g and pooled over the tokens), the
# context (the global query times the key, its projection and the query added back), and the
# final linear with the residual add. On L1 and XS 224 the whole attention of stage 0 costs more
# at 16 bits than the default target's time budget allows, while its query, context and final
# pieces hold most of its loss for half its cost (docs/mixed-precision.md).
ATTENTION_PIECES = ("query", "key", "global_query", "context", "final")
# The layers that open a piece, as their names appear after `attention` in a node's name, its
# parameters' or its outputs' (the upstream graph's Gemms are named `Gemm_1`, their bias is
# `...attention.to_query.bias`; its w_g is a parameter the MatMul reads).
_PIECE_LAYERS = {"to_query": "query", "to_key": "key", "w_g": "global_query", "pick": "global_query",
                 "proj": "context", "final": "final"}


def _piece_of_layer(node: onnx.NodeProto, params: set[str]) -> str | None:
    for name in (node.name, *(i for i in node.input if i in params), *node.output):
        path = re.split(r"[/.]", name)
        if ATTENTION_PART in path:
            for token in path[path.index(ATTENTION_PART) + 1:]:
                if token in _PIECE_LAYERS:
                    return _PIECE_LAYERS[token]
    return None


def attention_pieces(unit: PrecisionUnit, nodes: dict[str, onnx.NodeProto], params: set[str],
                     shapes: dict[str, tuple[int, ...]]) -> tuple[PrecisionUnit, ...]:
    """`unit` (an attention part) cut into `ATTENTION_PIECES`: a node of a named layer goes to that
    layer's piece; any other node to the latest piece it reads, except the node that multiplies the
    global query with the key, which opens the context. The residual add reads the final linear,
    so it ends the final piece."""
    order = {p: k for k, p in enumerate(ATTENTION_PIECES)}
    piece_of: dict[str, str] = {}  # tensor -> piece
    members: dict[str, list[onnx.NodeProto]] = {}
    for name in unit.nodes:
        n = nodes[name]
        piece = _piece_of_layer(n, params)
        if piece is None:
            read = {piece_of[i] for i in n.input if i in piece_of}
            piece = ("context" if {"key", "global_query"} <= read
                     else max(read, key=order.__getitem__) if read else ATTENTION_PIECES[0])
        members.setdefault(piece, []).append(n)
        piece_of.update((o, piece) for o in n.output)
    own = set(unit.tensors)
    return tuple(PrecisionUnit(f"{unit.name}.{p}", unit.kind, tuple(n.name for n in members[p]),
                               tuple(o for n in members[p] for o in n.output if o in own),
                               sum(node_macs(n, shapes) for n in members[p]))
                 for p in ATTENTION_PIECES if p in members)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[vi.name] = tuple(d.dim_value for d in t.shape.dim)
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of one node (0 when its shapes are unknown)."""
    out = shapes.get(node.output[0]) if node.output else None
    if out is None:
        return 0
    elems = int(np.prod(out)) if out else 1
    if node.op_type not in _MAC_OPS:
        return elems
    if node.op_type in ("Conv", "ConvTranspose"):
        w = shapes.get(node.input[1])
        if w is None:
            return elems
        if node.op_type == "Conv":  # W: [Cout, Cin/group, kh, kw]
            return elems * int(np.prod(w[1:]))
        x = shapes.get(node.input[0])  # ConvTranspose: each input element meets Cout/group * kh * kw weights
        return int(np.prod(x)) * int(np.prod(w[1:])) if x else elems
    a = shapes.get(node.input[0])  # Gemm / MatMul: the shared dimension is A's last (Gemm: unless transA)
    if a is None:
        return elems
    trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0) if node.op_type == "Gemm" else 0
    k = a[-2] if trans_a and len(a) >= 2 else a[-1]
    return elems * int(k)


def graph_macs(model: onnx.ModelProto, nodes: set[str]) -> int:
    """Multiply-accumulates of the named nodes of `model`."""
    shapes = _shapes(model)
    return sum(node_macs(n, shapes) for n in model.graph.node if n.name in nodes)


def unit_order(variant: Variant) -> list[str]:
    """Every unit `variant` can have, in execution order."""
    if variant.is_encoder_block:
        return [f"{ENCODER_BLOCK}.{p}" for p in (*PARTS, RESIDUAL)]
    return [name for block, kind in model_blocks(variant).items()
            for name in ([f"{block}.{p}" for p in PARTS] if kind == _SWIFTFORMER else [block])]


def unit_of(a: Attribution, variant: Variant) -> str | None:
    """The unit of an attributed node or op; None when nothing names one, and for a stage's
    SwiftFormerEncoder glue (its residual adds), which goes with the part it closes: only the
    graph tells which (`precision_units`)."""
    if variant.is_encoder_block:
        return f"{ENCODER_BLOCK}.{a.part or RESIDUAL}"
    if a.block not in model_blocks(variant):
        return None
    if a.kind == _SWIFTFORMER:
        return f"{a.block}.{a.part}" if a.part else None
    return a.block


def op_unit(name: str, onnx_nodes: Sequence[str], variant: Variant, by_node: dict[str, str]) -> str:
    """The unit of a compiled op (its name and the ONNX nodes it came from, as the estimator
    reports them); a SwiftFormerEncoder's glue by the node it was compiled from (`by_node`: node
    name -> unit), else, as for anything no unit holds, the block or `other` the op is attributed to."""
    a = attribute_op(name, onnx_nodes, variant)
    unit = unit_of(a, variant)
    if unit is None:
        unit = next((by_node[n] for n in (name, *onnx_nodes) if n in by_node), None)
    return unit or a.block


def op_piece(name: str, onnx_nodes: Sequence[str], unit: str, piece_by_node: dict[str, str]) -> str | None:
    """The piece of `unit` a compiled op belongs to, or None: the first of its names that is a node
    of one of the unit's pieces, or starts with one's name and `_` (the compiler names ops and the
    converts it adds after the node or tensor they come from: `<node>_token_29`,
    `<node>_output_0_DequantizeLinear_2`); the longest such node, as `Transpose` and `Transpose_6`
    both start `Transpose_6_output_0`."""
    for candidate in (name, *onnx_nodes):
        cut = len(candidate)
        while cut > 0:
            piece = piece_by_node.get(candidate[:cut])
            if piece is not None and piece.startswith(f"{unit}."):
                return piece
            cut = candidate.rfind("_", 0, cut)
    return None


def precision_units(model: onnx.ModelProto, variant: Variant) -> list[PrecisionUnit]:
    """The units of `model` (a float graph, before quantization) in execution order."""
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input}
    nodes = [n for n in model.graph.node if n.op_type not in QDQ_OPS and n.op_type != "Constant"]
    tensors = {n.name: NodeTensors(written=tuple(n.output), params=tuple(i for i in n.input if i in inits),
                                   read=tuple(i for i in n.input if i and i not in inits)) for n in nodes}
    shapes = _shapes(model)
    order = unit_order(variant)
    members: dict[str, list[onnx.NodeProto]] = {}
    kinds: dict[str, str | None] = {}
    written_by: dict[str, str] = {}  # tensor -> unit, for the glue
    for n in nodes:  # graph order is topological: a node's inputs are placed before it
        a = attribute_op(n.name, [n.name], variant, graph=tensors)
        unit = unit_of(a, variant)
        if unit is None and a.kind == _SWIFTFORMER and a.block in model_blocks(variant):
            # A residual add closes the branch it adds (`x + attention(x)`): the latest part of its
            # block it reads, so each part hands one tensor on and the parts stay a chain.
            read = [written_by[i] for i in n.input if written_by.get(i, "").startswith(f"{a.block}.")]
            unit = max(read, key=order.index) if read else f"{a.block}.{PARTS[0]}"
        if unit is None:  # nothing names it: it stays at the default precision
            continue
        members.setdefault(unit, []).append(n)
        kinds[unit] = a.kind
        written_by.update((o, unit) for o in n.output)
    units = []
    for name in order:
        if name not in members:
            continue
        ns = members[name]
        written = [o for n in ns for o in n.output if o and o not in graph_inputs]
        unit = PrecisionUnit(name, kinds[name], tuple(n.name for n in ns), tuple(written),
                             sum(node_macs(n, shapes) for n in ns))
        if name.rsplit(".", 1)[-1] == ATTENTION_PART:
            unit = replace(unit, pieces=attention_pieces(unit, {n.name: n for n in ns}, inits, shapes))
        units.append(unit)
    return units


def unplaced_nodes(model: onnx.ModelProto, units: Sequence[PrecisionUnit]) -> list[str]:
    """Compute nodes no unit holds (they stay at 8 bits)."""
    placed = {n for u in units for n in u.nodes}
    return [n.name for n in model.graph.node
            if n.op_type not in QDQ_OPS and n.op_type != "Constant" and n.name not in placed]


def assignable(units: Sequence[PrecisionUnit]) -> list[PrecisionUnit]:
    """What an assignment can name, in execution order: each unit, then its pieces."""
    return [v for u in units for v in (u, *u.pieces)]


def sixteen_bit_nodes(units: Sequence[PrecisionUnit], sixteen: Iterable[str]) -> set[str]:
    """The compute nodes of the units (or pieces of one) named in `sixteen`."""
    by_name = {u.name: u for u in assignable(units)}
    unknown = [s for s in sixteen if s not in by_name]
    if unknown:
        raise UsageError(f"No precision unit {', '.join(unknown)} in this model.",
                         hint=f"Units: {', '.join(by_name)}.")
    return {n for s in sixteen for n in by_name[s].nodes}


def activation_overrides(model: onnx.ModelProto, sixteen: set[str], wide, narrow) -> dict[str, list[dict]]:
    """onnxruntime tensor overrides (the `init_overrides` format of `get_qnn_qdq_config`) that run
    exactly the nodes in `sixteen` with `wide` (16-bit) activations, inputs and outputs, and every
    other node with `narrow` ones: a tensor is quantized at its producer's width, and where a
    consumer wants the other width a `convert` names the consumers that get it.

    onnxruntime's own fixer (add_qtype_converts) widens every consumer of an overridden tensor,
    so a block's 16 bits would spill into the first nodes of the next block; this does not."""
    inits = {i.name for i in model.graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    floats = {vi.name for vi in list(inferred.value_info) + list(inferred.input) + list(inferred.output)
              if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    producer: dict[str, str] = {}
    consumers: dict[str, list[str]] = {}
    for n in model.graph.node:
        for o in n.output:
            producer[o] = n.name
        for i in n.input:
            if i and i not in inits:
                consumers.setdefault(i, []).append(n.name)
    overrides: dict[str, list[dict]] = {}
    for tensor in [*(i.name for i in model.graph.input), *producer]:
        if tensor in inits or tensor not in floats:
            continue
        own = wide if producer.get(tensor) in sixteen else narrow
        other = narrow if own is wide else wide
        converted = {c for c in consumers.get(tensor, []) if (c in sixteen) != (own is wide)}
        entry: dict = {}
        if own is wide:
            entry["quant_type"] = wide
        if converted:
            entry.update(quant_type=own, convert={"quant_type": other, "recv_nodes": converted})
        if entry:
            overrides[tensor] = [entry]
    return overrides
