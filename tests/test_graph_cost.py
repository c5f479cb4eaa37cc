"""graph_cost: HTP ops by type, layout ops and float islands from QNN's op trace (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftformer_qnn.htp.graph_cost import GraphCost, graph_cost

ROOT = Path(__file__).resolve().parents[1]
# Op traces QNN 2.51 wrote when compiling the faithful L1 and encoder block (committed raw output).
L1_TRACE = ROOT / "profiles/emulator/l1-w8a8-qnn2.51.0-htp-emulator-x86-64.raw/qnn_op_trace.json"
ENCODER_TRACE = ROOT / "profiles/emulator/encoder-w8a8-qnn2.51.0-htp-emulator-x86-64.raw/qnn_op_trace.json"


def _op(qnn_type: str, name: str, *sources: str) -> dict:
    return {"dst_name": name, "dst_qnn_op_type": qnn_type, "node_group_type": "OrtNodeUnit",
            "sources": [{"name": s, "type": "OP"} for s in (sources or (name,))]}


def _trace(*ops: dict, graphs: int = 1) -> dict:
    per = [list(ops)] if graphs == 1 else [list(ops[i::graphs]) for i in range(graphs)]
    return {"subgraph_traces": [{"graph_name": f"g{i}", "op_mappings": o} for i, o in enumerate(per)]}


def test_the_faithful_l1_graph_as_qnn_built_it():
    """The issue's reading of this trace: 262 ops, 33 Reshape + 2 Transpose, four ReduceL2
    decompositions that drop to float (Dequantize -> SquareRoot -> Quantize)."""
    cost = graph_cost(json.loads(L1_TRACE.read_text()), 12_345)
    assert cost.htp_op_count == 262
    assert cost.op_types["Reshape"] == 33 and cost.op_types["Transpose"] == 2 and cost.layout_ops == 35
    assert cost.boundary_layout_ops == 1  # the image's NCHW -> NHWC; the rest are the token layout inside
    assert cost.op_types["Quantize"] == cost.op_types["Dequantize"] == 5
    assert cost.float_islands == 4 == cost.op_types["ElementWiseSquareRoot"]
    assert cost.boundary_conversions == 2
    assert cost.context_binary_bytes == 12_345
    assert sum(cost.op_types.values()) == cost.htp_op_count


def test_the_faithful_encoder_block():
    cost = graph_cost(json.loads(ENCODER_TRACE.read_text()))
    assert (cost.htp_op_count, cost.layout_ops, cost.float_islands) == (44, 11, 1)
    assert cost.boundary_layout_ops == 3  # two at the NCHW input (one per consumer), one at the output
    assert cost.context_binary_bytes is None


def test_boundary_conversions_are_not_islands():
    trace = _trace(
        _op("Quantize", "image_QuantizeLinear"),
        _op("Conv2d", "/stem/conv1/Conv", "DequantizeLinear_token_1", "/stem/conv1/Conv"),
        _op("Transpose", "Transpose_token_3", "DequantizeLinear", "Transpose_token_3"),
        _op("Dequantize", "DequantizeLinear_token_9"),
    )
    cost = graph_cost(trace)
    assert (cost.htp_op_count, cost.layout_ops, cost.float_islands, cost.boundary_conversions) == (4, 1, 0, 2)


def test_a_lone_dequantize_inside_the_graph_is_an_island():
    """Only the last lone Dequantize is the output's; an earlier one opens a float island."""
    trace = _trace(
        _op("Quantize", "x_QuantizeLinear"),
        _op("Dequantize", "/a/Mul_output_0_DequantizeLinear"),
        _op("ElementWiseSquareRoot", "/a/Sqrt", "/a/Mul_output_0_DequantizeLinear", "/a/Sqrt"),
        _op("Quantize", "/a/Sqrt_output_0_QuantizeLinear"),
        _op("Dequantize", "y_DequantizeLinear"),
    )
    cost = graph_cost(trace)
    assert cost.float_islands == 1 and cost.boundary_conversions == 2


def test_several_outputs_and_subgraphs():
    trace = _trace(
        _op("Quantize", "x_QuantizeLinear"),
        _op("Reshape", "/r/Reshape", "DequantizeLinear_token_1", "/r/Reshape"),
        _op("Dequantize", "y_DequantizeLinear"),
        _op("Dequantize", "z_DequantizeLinear"),
        graphs=2,
    )
    cost = graph_cost(trace, graph_outputs=2)
    assert (cost.htp_op_count, cost.layout_ops, cost.float_islands, cost.boundary_conversions) == (4, 1, 0, 3)
    assert graph_cost(trace).float_islands == 1  # read as one output, the other Dequantize is inside


def test_an_empty_trace_costs_nothing():
    cost = graph_cost({})
    assert cost == GraphCost(htp_op_count=0, op_types={}, layout_ops=0, boundary_layout_ops=0, float_islands=0,
                            boundary_conversions=0)
    with pytest.raises(ValueError):
        GraphCost(htp_op_count=-1, op_types={}, layout_ops=0, boundary_layout_ops=0, float_islands=0,
                  boundary_conversions=0)


def test_layout_ops_before_the_first_or_after_the_last_compute_op_are_the_boundary():
    trace = _trace(
        _op("Quantize", "x_QuantizeLinear"),
        _op("Transpose", "Transpose_token_1", "x_DequantizeLinear/duplicated", "Transpose_token_1"),
        _op("Transpose", "Transpose_token_2", "DequantizeLinear_token_7", "Transpose_token_2"),
        _op("Conv2d", "/a/Conv", "DequantizeLinear_token_3", "/a/Conv"),
        _op("Reshape", "/a/Reshape", "/a/Conv_output_0_DequantizeLinear", "/a/Reshape"),
        _op("ElementWiseAdd", "/a/Add", "DequantizeLinear_token_4", "/a/Add"),
        _op("Transpose", "Transpose_token_5", "y_DequantizeLinear", "Transpose_token_5"),
        _op("Dequantize", "DequantizeLinear_token_9"),
    )
    cost = graph_cost(trace)
    assert (cost.layout_ops, cost.boundary_layout_ops) == (4, 3)
    # A graph of layout ops only: every one of them is at the boundary.
    only = graph_cost(_trace(_op("Quantize", "x_QuantizeLinear"), _op("Transpose", "t", "d", "t"),
                             _op("Dequantize", "DequantizeLinear_token_2")))
    assert (only.layout_ops, only.boundary_layout_ops) == (1, 1)
