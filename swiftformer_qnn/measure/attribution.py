"""Which SwiftFormer block each QNN op belongs to (pure: names in, attributions out).

The model's module names (`swiftformer_qnn.model.swiftformer`) survive export as ONNX node names such
as `/stage2/block9_swiftformer_encoder/attention/to_query/MatMul`, and QNN keeps them, with
decorations, as op names: `<onnx node>:OpId_N (cycles)` in HTP profiles, `_token_N` suffixes
from onnxruntime's graph rewrites, `_QuantizeLinear`/`_DequantizeLinear` for QDQ nodes named
after tensors, and `/`, `.` turned into `_` by other converters (AI Hub layer names). Module
paths are therefore read as tokens between separators, not by exact match.

Rules, in order:

1. The op's own name (`via="name"`).
2. Otherwise the ONNX nodes the op came from (QNN's framework op trace, `via="op_trace"`),
   strongest evidence first: the fused compute nodes themselves; then the tensors the op
   writes (`<tensor>_QuantizeLinear`); then its parameters (`<state-dict key>_DequantizeLinear`);
   last the activations it reads (`<tensor>_DequantizeLinear`, named after their producer,
   which may sit in the previous block). The first kind of evidence that names a block decides.
   A float graph has no Q/DQ nodes to carry tensor names; given the ONNX graph (`graph`), a
   source node's own outputs, initializers and inputs count as the same three kinds.
3. When the deciding evidence names several blocks (an op fused across a block boundary), the
   op goes to the one that runs last: a fused op finishes with its last source node and
   writes that node's output, so its time is spent delivering the later block's result.
4. The graph input's bare Quantize (the only Quantize the HTP runs on its own) is the first
   block's input conversion (stem, or the standalone encoder); the graph output's bare
   Dequantize is the last block's (head, or encoder).
5. Nothing names a block: `other` (`via="none"`), except at the graph's ends in a known
   execution order (`attribute_ops`, `via="position"`). In the
   standalone-encoder variant the whole graph is the block, so such ops are `encoder` with
   `via="none"`.

Inside a SwiftFormerEncoder the part (`local_representation`, `attention`, `mlp`) comes from
the deciding evidence or anything stronger than the activations read; a branch's layer scale
(`attention_scale`, `mlp_scale`) belongs to its branch. Ops of the block's own glue (residual
adds, token reshapes) have no part.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..core.errors import ProfileError
from ..model.variants import BlockKind, Variant, get_variant
from .schema import UNATTRIBUTED, Attribution, OpRecord, Profile, op_times

ENCODER_BLOCK = "encoder"
PARTS = ("local_representation", "attention", "mlp")  # in execution order

# A module-path token is delimited by anything that is not a letter or digit: `/`, `.`, `_`,
# `:` and the like, so `/stage2/block9_...`, `stage2.block9_...` and `_stage2_block9_...` all read.
_L = r"(?<![A-Za-z0-9])"
_R = r"(?![A-Za-z0-9])"
_SEP = r"[^A-Za-z0-9]+"
_STAGE_BLOCK = re.compile(
    rf"{_L}stage(\d+){_SEP}block(\d+)_(conv_encoder|swiftformer_encoder){_R}", re.IGNORECASE
)
_STAGE_DOWNSAMPLE = re.compile(rf"{_L}stage(\d+){_SEP}downsample{_R}", re.IGNORECASE)
_STEM = re.compile(rf"{_L}stem{_R}", re.IGNORECASE)
_HEAD = re.compile(rf"{_L}head{_R}", re.IGNORECASE)
_ENCODER = re.compile(rf"{_L}swiftformer_encoder{_R}", re.IGNORECASE)
_BLOCK_PREFIX = re.compile(r"block\d+_$", re.IGNORECASE)
# `attention` also matches inside `attention_scale` (and `mlp` in `mlp_scale`) on purpose.
_PART = re.compile(rf"{_L}(local_representation|attention|mlp){_R}", re.IGNORECASE)
# onnxruntime's decorations of node names: `X_token_12`, `X/duplicated`, stacked.
_DECORATION = re.compile(r"(?:/duplicated|_token_\d+)+$")


def _variant(variant: Variant | str) -> Variant:
    # Profiles carry the variant by name (ModelInfo.variant); only its structure matters here.
    return get_variant(variant) if isinstance(variant, str) else variant


def model_blocks(variant: Variant | str) -> dict[str, str]:
    """Block id -> kind for every block of `variant`, in execution order."""
    return dict(_model_blocks(_variant(variant)))


@functools.lru_cache(maxsize=32)
def _model_blocks(variant: Variant) -> tuple[tuple[str, str], ...]:
    if variant.is_encoder_block:
        return ((ENCODER_BLOCK, BlockKind.SWIFTFORMER_ENCODER.value),)
    blocks = [("stem", "stem")]
    for i in range(len(variant.depths)):
        if i > 0:
            blocks.append((f"stage{i}.downsample", "downsample"))
        blocks += [(f"stage{i}.block{j}", kind.value) for j, kind in enumerate(variant.block_kinds(i))]
    blocks.append(("head", "head"))
    return tuple(blocks)


@dataclass(frozen=True)
class _Hit:
    block: str
    part: str | None


def _parts_between(text: str, start: int, end: int) -> list[str]:
    return [m.group(1).lower() for m in _PART.finditer(text, start, end)]


def _hits(text: str, variant: Variant, op_name: str) -> list[_Hit]:
    """Every block `text` names, each with the part named after it (before the next block)."""
    blocks = model_blocks(variant)
    found: list[tuple[int, int, str]] = []  # (start, end, block id)

    def foreign(what: str) -> ProfileError:
        return ProfileError(
            f"Op {op_name!r} names {what}, which {variant.title} does not have.",
            hint="Is this a profile of another model than the one it is attributed to?",
        )

    for m in _STAGE_BLOCK.finditer(text):
        stage, index, kind = int(m.group(1)), int(m.group(2)), m.group(3).lower()
        block = f"stage{stage}.block{index}"
        if blocks.get(block) != kind:
            raise foreign(f"stage {stage} block {index} ({kind})")
        found.append((m.start(), m.end(), block))
    for m in _STAGE_DOWNSAMPLE.finditer(text):
        block = f"stage{int(m.group(1))}.downsample"
        if block not in blocks:
            raise foreign(f"{block}")
        found.append((m.start(), m.end(), block))
    for pattern, block in ((_STEM, "stem"), (_HEAD, "head")):
        for m in pattern.finditer(text):
            if block not in blocks:
                raise foreign(f"the {block}")
            found.append((m.start(), m.end(), block))
    for m in _ENCODER.finditer(text):
        if _BLOCK_PREFIX.search(text, 0, m.start()):
            continue  # `blockN_swiftformer_encoder`: a stage's block, matched above
        if ENCODER_BLOCK not in blocks:
            raise foreign("a standalone SwiftFormerEncoder")
        found.append((m.start(), m.end(), ENCODER_BLOCK))

    found.sort()
    hits = []
    for k, (_, end, block) in enumerate(found):
        stop = found[k + 1][0] if k + 1 < len(found) else len(text)
        parts = _parts_between(text, end, stop) if blocks[block] == BlockKind.SWIFTFORMER_ENCODER.value else []
        hits.append(_Hit(block, max(parts, key=PARTS.index) if parts else None))
    return hits


@dataclass(frozen=True)
class NodeTensors:
    """One ONNX node's tensors, from the model file: what a renamed node reads and writes."""

    written: tuple[str, ...] = ()
    params: tuple[str, ...] = ()  # initializers (torch.onnx keeps the state-dict key as the name)
    read: tuple[str, ...] = ()  # activations


_QNN_OP_ID = re.compile(r"(?::OpId_\d+)? \(cycles\)$")


def _strip(node: str) -> str:
    return _DECORATION.sub("", _QNN_OP_ID.sub("", node))


def _evidence_tiers(
    name: str, onnx_nodes: Sequence[str], graph: Mapping[str, NodeTensors] | None
) -> list[list[str]]:
    """[op name], fused compute nodes, tensors written, parameters read, activations read."""
    compute, written, params, read = [], [], [], []
    for raw in onnx_nodes:
        node = _strip(raw)
        if node.endswith("_QuantizeLinear"):
            written.append(node[: -len("_QuantizeLinear")])
        elif node.endswith("_DequantizeLinear"):
            tensor = node[: -len("_DequantizeLinear")]
            # torch.onnx names activations by module path with a leading `/`; initializers keep
            # their state-dict key (`stage0.block2_swiftformer_encoder.attention.to_query.bias`).
            (read if tensor.startswith("/") else params).append(tensor)
        else:
            compute.append(node)
    if graph:
        for node in compute or [_strip(name)]:
            tensors = graph.get(node)
            if tensors is not None:
                written += tensors.written
                params += tensors.params
                read += tensors.read
    return [[name], compute, written, params, read]


_ACTIVATIONS_READ = 4


def _io_conversion(onnx_nodes: Sequence[str], variant: Variant) -> str | None:
    """The first or last block if the op is the graph input's Quantize or output's Dequantize."""
    nodes = [_strip(n) for n in onnx_nodes]
    if len(nodes) != 1:
        return None
    order = list(model_blocks(variant))
    if nodes[0].endswith("_QuantizeLinear") and len(nodes[0]) > len("_QuantizeLinear"):
        return order[0]
    if nodes[0].endswith("_DequantizeLinear") and len(nodes[0]) > len("_DequantizeLinear"):
        return order[-1]
    return None


def attribute_op(
    name: str,
    onnx_nodes: Sequence[str],
    variant: Variant | str,
    *,
    graph: Mapping[str, NodeTensors] | None = None,
) -> Attribution:
    """The block (and part) of one op, from its name, else from the ONNX nodes it came from.

    `graph` (ONNX node name -> its tensors) lets renamed nodes of a float graph, which has
    no Q/DQ nodes named after tensors, be placed by what they read and write.
    Raises ProfileError if a name mentions a block `variant` does not have.
    """
    variant = _variant(variant)
    blocks = model_blocks(variant)
    order = list(blocks)
    tiers = [[_hits(text, variant, name) for text in texts] for texts in _evidence_tiers(name, onnx_nodes, graph)]
    tiers = [[h for per_text in tier for h in per_text] for tier in tiers]

    deciding = next((t for t, hits in enumerate(tiers) if hits), None)
    if deciding is None:
        io_block = _io_conversion(onnx_nodes, variant)
        if io_block is not None:
            return Attribution(block=io_block, kind=blocks[io_block], via="op_trace")
        if variant.is_encoder_block:
            return Attribution(block=ENCODER_BLOCK, kind=blocks[ENCODER_BLOCK], via="none")
        return Attribution(block=UNATTRIBUTED, via="none")

    block = max((h.block for h in tiers[deciding]), key=order.index)
    part = None
    if blocks[block] == BlockKind.SWIFTFORMER_ENCODER.value:
        # Activations read name their producer's part, so they count only when they decided.
        last = deciding if deciding == _ACTIVATIONS_READ else _ACTIVATIONS_READ - 1
        for hits in tiers[: last + 1]:
            parts = [h.part for h in hits if h.block == block and h.part]
            if parts:
                part = max(parts, key=PARTS.index)
                break
    return Attribution(block=block, kind=blocks[block], part=part, via="name" if deciding == 0 else "op_trace")


def attribute_ops(
    ops: Sequence[OpRecord],
    variant: Variant | str,
    *,
    graph: Mapping[str, NodeTensors] | None = None,
    in_execution_order: bool = False,
) -> list[OpRecord]:
    """New records with `attribution` set (any existing attribution is replaced).

    With `in_execution_order` (the caller knows `ops` run in this order, e.g. the graph order of
    the estimator's ops), an op nothing names that runs before any op of a block other than the
    first can only be working on the graph input (the layout transposes onnxruntime inserts
    there), so it is the first block's (`via="position"`); one after every op of the other
    blocks, the last block's. So are the HTP graph's own `Input` and `Output` ops, which move the
    input in and the output out (the estimator's trace shows the output's Dequantize running
    inside `Output`).
    """
    variant = _variant(variant)
    found = [attribute_op(op.name, op.onnx_nodes, variant, graph=graph) for op in ops]
    blocks = model_blocks(variant)
    order = list(blocks)
    inner = [i for i, a in enumerate(found) if a.block not in (UNATTRIBUTED, order[0])]
    outer = [i for i, a in enumerate(found) if a.block not in (UNATTRIBUTED, order[-1])]
    if in_execution_order and inner and outer:
        for i, a in enumerate(found):
            if a.block == UNATTRIBUTED and (i < inner[0] or i > outer[-1]):
                block = order[0] if i < inner[0] else order[-1]
                found[i] = Attribution(block=block, kind=blocks[block], via="position")
    return [op.model_copy(update={"attribution": a}) for op, a in zip(ops, found, strict=True)]


def unattributed_share(profile: Profile) -> float:
    """Share of the profile's summed op time in ops attributed to no block (`other` or none)."""
    figures = op_times(profile).values
    total = sum(t for _, t in figures)
    if not total:
        return 0.0
    lost = sum(t for i, t in figures if (a := profile.ops[i].attribution) is None or a.block == UNATTRIBUTED)
    return lost / total
