"""Contract fixtures: AI Hub profile payloads shaped like the public real ones, for SwiftFormer-L1.

Each payload is built the way the client builds `download_profile()`'s dict: AI Hub's protobuf
(`qai_hub.public_api_pb2.ProfileDetail`) through the client's own `_profile_pb_to_python_dict`.
Layers are what QNN makes of the uploaded L1 graph (fused, decomposed, layout ops inserted), in
each shape public payloads show: cycles only; both fields with `execution_time: 0` below a
microsecond; converter names (non-alphanumerics to `_`, a `_` before a leading digit) of nodes
with no module path; converter suffixes; duplicated names; an empty name; boundary converts.
For each, attribution leaves under 5% of the device time unattributed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aihub_standin import QUIRKS, build_profile_detail, real_qdq_model, rename_nodes_like_old_exports
from qai_hub.client import _profile_pb_to_python_dict

from swiftformer_qnn.measure.attribution import unattributed_share
from swiftformer_qnn.measure.schema import (
    ModelInfo,
    Provenance,
    TargetInfo,
    TimeBasis,
    ToolchainInfo,
    block_times,
)
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.profiling.aihub_payload import onnx_sources, profile_from_hub, qnn_op_name, unique_layers
from swiftformer_qnn.profiling.emulator import onnx_node_tensors

L1_BLOCKS = 1 + 3 + sum(get_variant("l1").depths) + 1  # stem, 3 downsamples, the blocks, head


@pytest.fixture(scope="module")
def l1(tmp_path_factory) -> dict:
    """A real L1 QDQ export at 224 px, and a copy where every fifth compute node has an old-style name."""
    d = tmp_path_factory.mktemp("l1-contract")
    m = real_qdq_model("l1", 224, d)
    renamed_path = d / "l1_renamed.qdq.onnx"
    return {"qdq": m["qdq"], "renamed": renamed_path, "new_names": rename_nodes_like_old_exports(m["qdq"], renamed_path)}


def convert(model: Path, **kw):
    payload = _profile_pb_to_python_dict(build_profile_detail(model.read_bytes(), runs=20, seed="contract", fused=True, **kw))
    profile = profile_from_hub(
        payload,
        model=ModelInfo(variant="l1", input_shape=[1, 3, 224, 224], precision="w8a8"),
        target=TargetInfo(device="Samsung Galaxy S23 Ultra"),
        toolchain=ToolchainInfo(qnn_version="2.42.0"),
        provenance=Provenance(),
        sources=onnx_sources(model),
        graph=onnx_node_tensors(model),
    )
    return payload, profile


CASES = {
    "cycles only": {"layer_fields": "cycles"},
    "both fields, 0 us below a microsecond": {"layer_fields": "both"},
    "boundary converts": {"quirks": ("boundary_converts",)},
    "converter suffixes": {"quirks": ("suffixes",)},
    "duplicated names": {"quirks": ("duplicates",)},
    "an empty name": {"quirks": ("empty_names",)},
    "everything at once": {"layer_fields": "both", "quirks": QUIRKS},
}


@pytest.mark.parametrize("graph", ["original", "old-style node names"])
@pytest.mark.parametrize("case", list(CASES))
def test_attribution_of_real_shaped_l1_payloads(l1, case, graph):
    model = l1["qdq"] if graph == "original" else l1["renamed"]
    payload, p = convert(model, **CASES[case])
    layers = payload["execution_detail"]
    # Every layer kept, a repeated one (same name and figures) once.
    assert [op.name for op in p.ops] == [d["name"] for d in unique_layers(layers)[0]]
    if "duplicates" in CASES[case].get("quirks", ()):
        assert len(p.ops) < len(layers) and "repeated in AI Hub's execution_detail counted once" in p.provenance.note
    if CASES[case].get("layer_fields", "cycles") == "cycles":
        assert all("execution_time" not in d and d["execution_cycles"] > 0 for d in layers)
    else:
        assert any(d["execution_time"] == 0 for d in layers)  # sub-microsecond layers
    blocks = block_times(p)
    assert {b.basis for b in blocks.values()} == {TimeBasis.DERIVED_FROM_CYCLES}
    assert sum(b.time for b in blocks.values()) == pytest.approx(p.latency.median_us)
    assert len([b for b in blocks if b != "other"]) == L1_BLOCKS
    share = unattributed_share(p)
    print(f"\nL1, {case}, {graph}: {len(layers)} layers, unattributed {share:.2%}")
    assert share < 0.05


def test_old_style_names_are_converted_as_qnn_does(l1):
    payload, p = convert(l1["renamed"])
    names = {d["name"] for d in payload["execution_detail"]}
    digit = [n for n in l1["new_names"] if n[0].isdigit()]
    dotted = [n for n in l1["new_names"] if "." in n]
    assert digit and dotted
    assert any(qnn_op_name(n) in names for n in digit) and any(qnn_op_name(n) in names for n in dotted)
    # A layer named after such a node is placed through the graph, not its name.
    for n in digit + dotted:
        ops = [op for op in p.ops if op.name == qnn_op_name(n)]
        for op in ops:
            assert op.attribution.block != "other" and op.attribution.via == "op_trace", (n, op.attribution)


def _slowed_payload(model: Path, block_path: str, factor: float, seed: str) -> dict:
    """A cycles-only L1 payload whose `block_path` layers (e.g. `stage3_block3_`) take `factor`
    times the cycles, the whole-model runs longer by the cycles added (AI Hub's estimate too)."""
    detail = build_profile_detail(model.read_bytes(), runs=20, seed=seed, fused=True)
    total = sum(layer.execution_cycles for layer in detail.layer_details)
    added = 0
    for layer in detail.layer_details:
        if block_path in layer.name:
            extra = int(layer.execution_cycles * (factor - 1))
            layer.execution_cycles += extra
            added += extra
    assert added > 0, block_path
    runs = [int(t * (1 + added / total)) for t in detail.all_execution_times]
    del detail.all_execution_times[:]
    detail.all_execution_times.extend(runs)
    detail.execution_time = min(runs)
    return _profile_pb_to_python_dict(detail)


def test_gate_on_two_imported_cycles_only_profiles_names_the_slower_block(l1, tmp_path, monkeypatch):
    """Two L1 profiles as AI Hub's download_profile() gives them, imported; in the candidate one
    SwiftFormer block takes 30% more device cycles. The gate fails and names that block."""
    import json

    from aihub_standin import make_export_dir
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app
    from swiftformer_qnn.profiling.aihub_payload import jsonable

    monkeypatch.setenv("COLUMNS", "200")
    sim = l1["qdq"].parent / "l1_224.sim.onnx"
    export = make_export_dir(tmp_path / "export", qdq=l1["qdq"], sim=sim, variant="l1", precision="w8a8",
                             input_shape=[1, 3, 224, 224])
    runner = CliRunner()
    sides = {}
    for side, factor, seed in (("baseline", 1.0, "base"), ("candidate", 1.3, "cand")):
        raw = tmp_path / f"{side}.json"
        payload = (_profile_pb_to_python_dict(build_profile_detail(l1["qdq"].read_bytes(), runs=20, seed=seed, fused=True))
                   if factor == 1.0 else _slowed_payload(l1["qdq"], "stage3_block3_", factor, seed))
        raw.write_text(json.dumps(jsonable(payload)))
        res = runner.invoke(app, ["profile", "import", str(raw), "--from", str(export), "--device", "s23 ultra",
                                  "--qnn", "2.42", "--out", str(tmp_path / side)])
        assert res.exit_code == 0, res.output
        sides[side] = tmp_path / side
        if side == "baseline":
            print("\n" + res.stdout)
    res = runner.invoke(app, ["gate", "latency", "-b", str(sides["baseline"]), "-c", str(sides["candidate"])])
    print(res.stdout)
    assert res.exit_code == 1, res.output
    failed = [line for line in res.stdout.splitlines() if "stage3.block3" in line]
    assert failed and any("regress" in line.lower() or "fail" in line.lower() for line in failed), res.stdout
    others = [line for line in res.stdout.splitlines()
              if re_block(line) and "stage3.block3" not in line and "regress" in line.lower()]
    assert others == [], others
    assert "derived from device cycles" in res.stdout


def re_block(line: str) -> bool:
    import re

    return re.search(r"\bstage\d\.(block\d+|downsample)\b|\bstem\b|\bhead\b", line) is not None
