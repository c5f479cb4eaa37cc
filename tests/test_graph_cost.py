"""QNN's op trace, read once (`parse_op_trace`), and what the record takes from it: HTP ops by
type (`op_types`), layout ops and float islands (`graph_cost`). Pure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftformer_qnn.core.errors import ProfileError
from swiftformer_qnn.htp.record import (
    CompileRecord,
    GraphCost,
    graph_cost,
    op_types,
    parse_op_trace,
    read_compile_record,
    read_op_trace,
    traced_figures,
)

ROOT = Path(__file__).resolve().parents[1]
# Op traces QNN 2.51 wrote when compiling the faithful L1 and encoder block (the raw output once
# committed under profiles/emulator/, which now holds the default graph's).
L1_TRACE = ROOT / "tests/data/faithful-traces/l1-w8a8-qnn2.51.0.qnn_op_trace.json"
ENCODER_TRACE = ROOT / "tests/data/faithful-traces/encoder-w8a8-qnn2.51.0.qnn_op_trace.json"


def _op(qnn_type: str, name: str, *sources: str) -> dict:
    return {"dst_name": name, "dst_qnn_op_type": qnn_type, "node_group_type": "OrtNodeUnit",
            "sources": [{"name": s, "type": "OP"} for s in (sources or (name,))]}


def _trace(*ops: dict, graphs: int = 1) -> dict:
    per = [list(ops)] if graphs == 1 else [list(ops[i::graphs]) for i in range(graphs)]
    return {"subgraph_traces": [{"graph_name": f"g{i}", "op_mappings": o} for i, o in enumerate(per)]}


def _cost(trace: dict, **kwargs) -> GraphCost:
    return graph_cost(parse_op_trace(trace), **kwargs)


def test_the_faithful_l1_graph_as_qnn_built_it():
    """The issue's reading of this trace: 262 ops, 33 Reshape + 2 Transpose, four ReduceL2
    decompositions that drop to float (Dequantize -> SquareRoot -> Quantize)."""
    ops = read_op_trace(L1_TRACE)
    cost, types = graph_cost(ops), op_types(ops)
    assert len(ops) == 262
    assert types["Reshape"] == 33 and types["Transpose"] == 2 and cost.layout_ops == 35
    assert cost.boundary_layout_ops == 1  # the image's NCHW -> NHWC; the rest are the token layout inside
    assert types["Quantize"] == types["Dequantize"] == 5
    assert cost.float_islands == 4 == types["ElementWiseSquareRoot"]
    assert cost.boundary_conversions == 2
    assert sum(types.values()) == len(ops)
    assert traced_figures(L1_TRACE) == {"op_trace": L1_TRACE.name, "htp_op_count": 262, "htp_op_types": types,
                                        "graph_cost": cost}


def test_the_faithful_encoder_block():
    ops = read_op_trace(ENCODER_TRACE)
    cost = graph_cost(ops)
    assert (len(ops), cost.layout_ops, cost.float_islands) == (44, 11, 1)
    assert cost.boundary_layout_ops == 3  # two at the NCHW input (one per consumer), one at the output


def test_boundary_conversions_are_not_islands():
    trace = _trace(
        _op("Quantize", "image_QuantizeLinear"),
        _op("Conv2d", "/stem/conv1/Conv", "DequantizeLinear_token_1", "/stem/conv1/Conv"),
        _op("Transpose", "Transpose_token_3", "DequantizeLinear", "Transpose_token_3"),
        _op("Dequantize", "DequantizeLinear_token_9"),
    )
    cost = _cost(trace)
    assert (cost.layout_ops, cost.float_islands, cost.boundary_conversions) == (1, 0, 2)


def test_a_lone_dequantize_inside_the_graph_is_an_island():
    """Only the last lone Dequantize is the output's; an earlier one opens a float island."""
    trace = _trace(
        _op("Quantize", "x_QuantizeLinear"),
        _op("Dequantize", "/a/Mul_output_0_DequantizeLinear"),
        _op("ElementWiseSquareRoot", "/a/Sqrt", "/a/Mul_output_0_DequantizeLinear", "/a/Sqrt"),
        _op("Quantize", "/a/Sqrt_output_0_QuantizeLinear"),
        _op("Dequantize", "y_DequantizeLinear"),
    )
    cost = _cost(trace)
    assert cost.float_islands == 1 and cost.boundary_conversions == 2


def test_several_outputs_and_subgraphs():
    trace = _trace(
        _op("Quantize", "x_QuantizeLinear"),
        _op("Reshape", "/r/Reshape", "DequantizeLinear_token_1", "/r/Reshape"),
        _op("Dequantize", "y_DequantizeLinear"),
        _op("Dequantize", "z_DequantizeLinear"),
        graphs=2,
    )
    cost = _cost(trace, graph_outputs=2)
    assert (len(parse_op_trace(trace)), cost.layout_ops, cost.float_islands, cost.boundary_conversions) == (4, 1, 0, 3)
    assert _cost(trace).float_islands == 1  # read as one output, the other Dequantize is inside


def test_an_empty_trace_costs_nothing():
    assert _cost(_trace()) == GraphCost(layout_ops=0, boundary_layout_ops=0, float_islands=0, boundary_conversions=0,
                                        convert_ops=0)
    assert op_types(parse_op_trace(_trace())) == {}
    with pytest.raises(ValueError):
        GraphCost(layout_ops=-1, boundary_layout_ops=0, float_islands=0, boundary_conversions=0)


@pytest.mark.parametrize("content", ["{}", '{"subgraph_traces": [{"op_mappings": [{"sources": []}]}]}', "[1]", "not json"])
def test_a_file_that_is_no_op_trace_is_one_error_naming_it(tmp_path, content):
    """Every reader reads the trace here, so a file of another shape is refused alike everywhere
    (before: the graph cost counted `{}` as an empty graph, the emulator's reader refused it)."""
    path = tmp_path / "qnn_op_trace.json"
    path.write_text(content)
    with pytest.raises(ProfileError, match="qnn_op_trace.json: "):
        read_op_trace(path)


def test_a_schema_1_record_reads_with_each_figure_once():
    """Records written before the figures were stored once repeated the op count, op types and
    binary size inside graph_cost; they read back, without the copies."""
    record = json.loads((ROOT / "profiles/baselines/compile-l1-w8a8-sm8550-qnn2-51-0/compile.json").read_text())
    cost = {"layout_ops": 1, "boundary_layout_ops": 1, "float_islands": 0, "boundary_conversions": 2}
    legacy = {**record, "schema_version": 1, "graph_cost": {**cost, "htp_op_count": record["htp_op_count"],
                                                             "op_types": record["htp_op_types"],
                                                             "context_binary_bytes": record["context_binary_bytes"]}}
    read = CompileRecord.model_validate(legacy)
    assert read.graph_cost == GraphCost(**cost)
    assert "htp_op_count" not in read.graph_cost.model_dump()
    assert read_compile_record(ROOT / "profiles/baselines/compile-l1-w8a8-sm8550-qnn2-51-0/compile.json").graph_cost


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
    cost = _cost(trace)
    assert (cost.layout_ops, cost.boundary_layout_ops) == (4, 3)
    # A graph of layout ops only: every one of them is at the boundary.
    only = _cost(_trace(_op("Quantize", "x_QuantizeLinear"), _op("Transpose", "t", "d", "t"),
                             _op("Dequantize", "DequantizeLinear_token_2")))
    assert (only.layout_ops, only.boundary_layout_ops) == (1, 1)


def test_convert_ops_are_counted_and_every_reader_of_the_figures_has_them(tmp_path):
    """One figure added in one place (the record's graph cost and `FIGURES`) reaches the export
    summary, the diff of two compiles, `gate structure` and `report --compare`."""
    from swiftformer_qnn.cli.render import render_graph_cost
    from swiftformer_qnn.gate import GateRules, gate_structure
    from swiftformer_qnn.gate.verdict import MetricStatus
    from swiftformer_qnn.htp.diff import diff_compiles
    from swiftformer_qnn.pipeline.artifacts import FoundCompile
    from swiftformer_qnn.report.structure import compare_structures

    def record(converts: int) -> CompileRecord:
        ops = [_op("Quantize", "x_QuantizeLinear"), _op("Conv2d", "/a/Conv", "DequantizeLinear_token_1", "/a/Conv"),
               *(_op("Convert", f"/a/Conv_convert_{i}", "/a/Conv") for i in range(converts)),
               _op("Dequantize", "y_DequantizeLinear")]
        trace = tmp_path / f"{converts}" / "qnn_op_trace.json"
        trace.parent.mkdir()
        trace.write_text(json.dumps(_trace(*ops)))
        base = json.loads((ROOT / "profiles/baselines/compile-l1-w8a8-sm8550-qnn2-51-0/compile.json").read_text())
        return CompileRecord.model_validate({**base, "graph_cost": None} | traced_figures(trace))

    one, three = record(1), record(3)
    assert one.graph_cost.convert_ops == 1 and three.graph_cost.convert_ops == 3
    assert "Convert ops 3" in render_graph_cost(three)
    assert diff_compiles(one, three).figure("convert_ops").delta == 2
    verdict = gate_structure(FoundCompile(one, tmp_path / "a"), [FoundCompile(three, tmp_path / "b")], GateRules())
    (grown,) = [r for r in verdict.results if r.metric == "convert_ops"]
    assert grown.status is MetricStatus.REGRESSION and not verdict.passed
    totals = {d.metric: (d.a, d.b) for d in compare_structures("a", one, "b", three).totals}
    assert totals["Convert ops"] == (1, 3)
