"""What a compiled graph costs on the HTP, read from QNN's framework op trace (pure).

A phone runs exactly the ops QNN built, so their number and kinds are the device-free
measure of a graph: how many HTP ops, of which types, how many of them only move data
(layout ops: Reshape, Transpose), and how many float islands, where the quantized graph
drops to float and back (a Dequantize inside the graph, an op QNN has no quantized kernel
for, then a Quantize). The graph input's Quantize and the output's Dequantize are the
boundary of every quantized graph, not islands: QNN builds them from the bare QuantizeLinear
/ DequantizeLinear node of the graph input or output, so their op trace names no other node.
Likewise a layout op before the graph's first compute op, or after its last, can only convert
the graph's input or output between the ONNX layout (NCHW) and the HTP's channel-last one: the
trace lists ops in execution order, so such an op reads nothing but the input (or feeds nothing
but the output). Those are counted apart (`boundary_layout_ops`) from layout ops inside the graph.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LAYOUT_OP_TYPES = ("Reshape", "Transpose")


class GraphCost(BaseModel):
    """The HTP graph's structure, as QNN built it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    htp_op_count: int = Field(ge=0)
    op_types: dict[str, int]  # QNN op type -> count
    layout_ops: int = Field(ge=0)  # Reshape + Transpose, wherever they are
    boundary_layout_ops: int = Field(ge=0)  # of those, the ones that only convert the graph's input or output
    float_islands: int = Field(ge=0)  # Dequantize ops inside the graph (each opens a float island)
    boundary_conversions: int = Field(ge=0)  # the graph input's Quantize and output's Dequantize
    context_binary_bytes: int | None = Field(default=None, ge=0)


def trace_ops(op_trace: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The HTP ops of every subgraph of a `qnn_op_trace.json`, in order."""
    return [m for g in op_trace.get("subgraph_traces", []) for m in g.get("op_mappings", [])]


def _is_lone_conversion(op: Mapping[str, Any], qnn_type: str) -> bool:
    """A Quantize/Dequantize QNN made from one bare QuantizeLinear/DequantizeLinear node, not
    from the decomposition of a compute node (whose trace names that node too)."""
    if op.get("dst_qnn_op_type") != qnn_type:
        return False
    sources = [s.get("name", "") for s in op.get("sources", []) if s.get("type") == "OP"]
    return len(sources) == 1 and "quantizelinear" in sources[0].lower()  # also DequantizeLinear


def graph_cost(
    op_trace: Mapping[str, Any], context_binary_bytes: int | None = None, *, graph_inputs: int = 1,
    graph_outputs: int = 1,
) -> GraphCost:
    """Count the HTP ops of an op trace by type, layout ops and float islands.

    The first `graph_inputs` lone Quantize ops and the last `graph_outputs` lone Dequantize ops
    (the trace lists ops in execution order) are the graph's boundary; every other Dequantize
    opens a float island."""
    ops = trace_ops(op_trace)
    types = Counter(str(m.get("dst_qnn_op_type", "?")) for m in ops)
    inputs = [m for m in ops if _is_lone_conversion(m, "Quantize")][:graph_inputs]
    outputs = [m for m in ops if _is_lone_conversion(m, "Dequantize")][-graph_outputs:] if graph_outputs else []
    inner_dequantize = types["Dequantize"] - len(outputs)
    boundary = inputs + outputs
    # Compute ops: everything but layout ops and the boundary conversions.
    compute = [i for i, m in enumerate(ops)
               if m.get("dst_qnn_op_type") not in LAYOUT_OP_TYPES and not any(m is b for b in boundary)]
    layout_at = [i for i, m in enumerate(ops) if m.get("dst_qnn_op_type") in LAYOUT_OP_TYPES]
    boundary_layout = [i for i in layout_at if not compute or i < compute[0] or i > compute[-1]]
    return GraphCost(
        htp_op_count=len(ops),
        op_types=dict(sorted(types.items())),
        layout_ops=len(layout_at),
        boundary_layout_ops=len(boundary_layout),
        float_islands=inner_dequantize,
        boundary_conversions=len(boundary),
        context_binary_bytes=context_binary_bytes,
    )
