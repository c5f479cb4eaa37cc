"""`report --compare A B` of two compiles: the compiled graphs side by side, from compile records.

The records are hand-made with the committed L1 baseline's figures' shape (pure: no compile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_terminal_width import assert_readable, render
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.htp.record import (
    CompiledModel,
    CompileFailure,
    CompileRecord,
    GraphCost,
    write_compile_record,
)
from swiftformer_qnn.report.markdown import structure_md
from swiftformer_qnn.report.structure import compare_structures
from swiftformer_qnn.report.terminal import structure_renderable

runner = CliRunner()
FAITHFUL = {"Conv2d": 57, "DepthWiseConv2d": 22, "FullyConnected": 22, "Reshape": 33, "Transpose": 2,
            "ElementWiseAdd": 35, "Batchnorm": 5, "Dequantize": 5, "Quantize": 5}
HTP = {"Conv2d": 81, "DepthWiseConv2d": 22, "FullyConnected": 1, "Transpose": 1, "ElementWiseAdd": 34,
       "L2Norm": 16, "Dequantize": 1, "Quantize": 1}


def record(op_types: dict[str, int] | None, *, qnn="2.51.0", variant="l1", size=12_000_000, layout=None,
           islands=0, boundary_layout=1) -> CompileRecord:
    cost = None if op_types is None else GraphCost(
        layout_ops=layout if layout is not None else op_types.get("Reshape", 0) + op_types.get("Transpose", 0),
        boundary_layout_ops=boundary_layout, float_islands=islands, boundary_conversions=2)
    return CompileRecord(
        qnn_version=qnn, ep_sdk_version=f"v{qnn}.1", onnxruntime="1.31.1", onnxruntime_qnn="2.7.0", soc="sm8550",
        soc_model=43, htp_arch=73, fp16=False,
        model=CompiledModel(variant=variant, precision="w8a8", input_shape=[1, 3, 224, 224]),
        model_sha256="a" * 64, compile_s=1.0, context_binary_bytes=size, context_binary_sha256="b" * 64,
        op_trace=None if op_types is None else "qnn_op_trace.json",
        htp_op_count=None if op_types is None else sum(op_types.values()), htp_op_types=op_types, graph_cost=cost)


def write(directory: Path, r: CompileRecord) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_compile_record(directory, r)


def test_totals_and_op_types_are_b_against_a_biggest_change_first():
    cmp = compare_structures("faithful", record(FAITHFUL, size=12_800_000, islands=4), "htp",
                             record(HTP, size=12_300_000))
    totals = {d.metric: (d.a, d.b, d.delta) for d in cmp.totals}
    assert totals["HTP ops"] == (186, 157, -29)
    assert totals["layout ops"] == (35, 1, -34)
    assert totals["layout ops at input/output"] == (1, 1, 0)
    assert totals["float islands"] == (4, 0, -4)
    assert totals["context binary bytes"] == (12_800_000, 12_300_000, -500_000)
    types = [(d.metric, d.a, d.b, d.delta) for d in cmp.op_types]
    assert types[0] == ("Reshape", 33, 0, -33)  # absent from B: counted 0 there
    assert types[1] == ("Conv2d", 57, 81, 24)
    assert ("L2Norm", 0, 16, 16) in types
    assert [t[0] for t in types if t[3] == 0] == ["DepthWiseConv2d"]  # unchanged ones last
    assert cmp.notes == []


def test_a_compile_without_op_trace_compares_only_its_size():
    cmp = compare_structures("2.47", record(None, qnn="2.47.0"), "2.51", record(HTP))
    totals = {d.metric: (d.a, d.b, d.delta) for d in cmp.totals}
    assert totals["HTP ops"] == (None, 157, None)
    assert totals["context binary bytes"] == (12_000_000, 12_000_000, 0)
    assert all(d.a is None and d.delta is None for d in cmp.op_types)
    assert any("QNN 2.47.0" in n and "no op trace" in n for n in cmp.notes)
    assert "| HTP ops | – | 157 | – |" in structure_md(cmp)


def test_different_models_are_named_in_a_note():
    cmp = compare_structures("l1", record(HTP), "xs", record(HTP, variant="xs"))
    assert any("different models (variant differ)" in n for n in cmp.notes)


@pytest.mark.parametrize("width", [80, 120])
def test_terminal_tables_fit(width):
    cmp = compare_structures("build/l1-w8a8-sm8550-faithful", record(FAITHFUL, islands=4),
                             "build/l1-w8a8-sm8550/qnn-versions/qnn-2.51.0/compile.json", record(HTP))
    text = render(structure_renderable(cmp), width)
    assert_readable(text, width, ["DepthWiseConv2d", "−33", "12,000,000", "2.51.0", "float islands"])


def test_compare_two_compiles_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "faithful", record(FAITHFUL, size=12_800_000, islands=4))
    b = write(tmp_path / "htp" / "qnn-versions" / "qnn-2.51.0", record(HTP, size=12_300_000))
    res = runner.invoke(app, ["report", "--compare", "faithful", str(b)])
    assert res.exit_code == 0, res.output
    assert "−500,000" in res.stdout and "float islands" in res.stdout
    out = tmp_path / "build" / "reports" / "compare-faithful-vs-qnn-2.51.0"
    data = json.loads((out / "compare.json").read_text())
    assert data["kind"] == "swiftformer-qnn.structure-comparison"
    assert data["a"]["label"] == "faithful" and data["b"]["qnn_version"] == "2.51.0"
    md = (out / "compare.md").read_text()
    assert "| Reshape | 33 | 0 | −33 |" in md and "| float islands | 4 | 0 | −4 |" in md
    # A second comparison replaces the first report of the same name.
    assert runner.invoke(app, ["report", "--compare", str(b), "faithful", "--out", str(out)]).exit_code == 0
    assert json.loads((out / "compare.json").read_text())["a"]["label"].endswith("compile.json")


def _one_line_error(res, needle: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr


def test_bad_compare_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a", record(HTP))
    (tmp_path / "p.profile.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    write(tmp_path / "sweep" / "qnn-2.50.40", record(HTP, qnn="2.50.40"))
    write(tmp_path / "sweep" / "qnn-2.51.0", record(HTP))
    invoke = lambda *a: runner.invoke(app, ["report", "--compare", *a])  # noqa: E731
    _one_line_error(invoke("a", "p.profile.json"), "two profiles or two compiles, not one of each")
    _one_line_error(invoke("a", "empty"), "empty: no compile.json below this compile directory")
    _one_line_error(invoke("a", "sweep"), "sweep holds 2 compiles")
    # A version that did not compile is a compile, and the error says it failed.
    failed = tmp_path / "failed" / "compile_failed.json"
    failed.parent.mkdir()
    failed.write_text(CompileFailure(qnn_version="2.47.0", onnxruntime_qnn="2.3.0", onnxruntime="1.31.1",
                                     status="failed", error="HTP rejected Gelu").model_dump_json())
    _one_line_error(invoke("a/compile.json", str(failed)), "QNN 2.47.0 did not compile (failed: HTP rejected Gelu)")
    # Directories of profiles are profiles: the error is about profiles, not a missing compile.json.
    for d in ("runs1", "runs2"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.profile.json").write_text("{}")
    res = invoke("runs1", "runs2")
    assert res.exit_code == 2 and "compile.json" not in res.output, res.output
    _one_line_error(invoke("a", "runs1"), "two profiles or two compiles, not one of each")
    assert not (tmp_path / "build").exists()
