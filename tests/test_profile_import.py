"""`swiftformer-qnn profile import`: a profile a user downloaded from AI Hub, in our schema.

Payloads are made the way the client makes them (`_profile_pb_to_python_dict` on AI Hub's
protobuf), from the real QDQ export they measure, then saved as a user saves them (json.dump).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aihub_standin import build_profile_detail, make_export_dir, real_qdq_model
from qai_hub.client import _profile_pb_to_python_dict
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.measure.attribution import unattributed_share
from swiftformer_qnn.measure.schema import LatencySource, TimeBasis, block_times, load_profile
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.profiling.aihub_payload import jsonable
from swiftformer_qnn.profiling.importers import IMPORTERS, find_importer


@pytest.fixture(scope="module")
def xs_model(tmp_path_factory) -> dict:
    return real_qdq_model("xs", 64, tmp_path_factory.mktemp("import-onnx"))


@pytest.fixture
def export(xs_model, tmp_path) -> Path:
    return make_export_dir(tmp_path / "export", qdq=xs_model["qdq"], sim=xs_model["sim"], variant="xs",
                           precision="w8a8", input_shape=list(get_variant("xs").input_shape(64)))


@pytest.fixture(autouse=True)
def _wide(monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)


def saved_payload(model: Path, path: Path, **kw) -> Path:
    """What `json.dump(job.download_profile(), f)` leaves (the client's tuples become lists)."""
    payload = _profile_pb_to_python_dict(build_profile_detail(model.read_bytes(), runs=9, seed="import", fused=True, **kw))
    path.write_text(json.dumps(jsonable(payload)))
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, ["profile", "import", *args])


def test_import_a_cycles_only_ai_hub_profile(xs_model, export, tmp_path):
    raw = saved_payload(xs_model["qdq"], tmp_path / "downloaded.json")
    res = invoke(str(raw), "--from", str(export), "--device", "s23 ultra", "--qnn", "2.42.0.251225135753_193295",
                 "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    path = tmp_path / "out" / "xs-r64-w8a8-qnn2.42.0-samsung-galaxy-s23-ultra.profile.json"
    assert f"{path.parent}/" in res.stdout and path.name in res.stdout  # the folder once, then each file
    p = load_profile(path)
    assert p.source is LatencySource.AIHUB and p.target.device == "Samsung Galaxy S23 Ultra"
    assert p.toolchain.qnn_version == "2.42.0"
    assert all(op.execution_time_us is None and op.execution_cycles for op in p.ops)
    blocks = block_times(p)
    assert {b.basis for b in blocks.values()} == {TimeBasis.DERIVED_FROM_CYCLES}
    assert sum(b.time for b in blocks.values()) == pytest.approx(p.latency.median_us)
    assert p.latency.label() == "median of 9 runs"
    assert "derived from device cycles x median of 9 runs" in res.stdout
    assert unattributed_share(p) < 0.05
    assert raw.read_text() == json.dumps(json.loads(raw.read_text()))  # the user's file untouched


def test_import_json_summary_is_the_profile_commands_own(xs_model, export, tmp_path):
    """`profile import --json` prints what the other profile commands print with --json (one
    profile, its source and per-block figures) and nothing else on stdout."""
    raw = saved_payload(xs_model["qdq"], tmp_path / "downloaded.json")
    res = invoke(str(raw), "--from", str(export), "--device", "s23 ultra", "--qnn", "2.42", "--out",
                 str(tmp_path / "out"), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    (item,) = summary["profiles"]
    p = load_profile(Path(item["files"]["profile"]))
    assert summary["backend"] == "import" and summary["device"] == item["device"] == "Samsung Galaxy S23 Ultra"
    assert item["source"] == p.source.value == "aihub" and item["latency"]["median_us"] == p.latency.median_us
    assert {name: b["time"] for name, b in item["blocks"].items()} == {n: b.time for n, b in block_times(p).items()}


def test_import_needs_the_device_and_refuses_other_files(xs_model, export, tmp_path):
    raw = saved_payload(xs_model["qdq"], tmp_path / "downloaded.json")
    res = invoke(str(raw), "--from", str(export), "--out", str(tmp_path / "out"))
    assert res.exit_code == 2 and "--device" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    other = tmp_path / "notes.json"
    other.write_text('{"hello": 1}')
    res = invoke(str(other), "--from", str(export), "--device", "s23 ultra")
    assert res.exit_code == 2 and "not a profile format" in res.stderr and IMPORTERS[0] != ""
    assert not (tmp_path / "out").exists()


def test_an_existing_profile_is_not_replaced(xs_model, export, tmp_path):
    raw = saved_payload(xs_model["qdq"], tmp_path / "downloaded.json")
    args = (str(raw), "--from", str(export), "--device", "Samsung Galaxy S23 Ultra", "--qnn", "2.42", "--out", str(tmp_path / "o"))
    assert invoke(*args).exit_code == 0
    before = {p: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    res = invoke(*args)
    assert res.exit_code == 2 and "not replaced" in res.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before


def test_sniffing(xs_model, tmp_path):
    raw = saved_payload(xs_model["qdq"], tmp_path / "p.json")
    assert find_importer(raw).NAME == "aihub-download-profile-json"
