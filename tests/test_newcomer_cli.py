"""What a new user meets first: default output folders that do not collide, inputs checked before
the output folder, `--version`, `--json`, `cache`, cached stages marked in a rerun, and AI Hub's
retries as short progress lines."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.pipeline.orchestrator import _resolve, default_output_dir
from swiftformer_qnn.pipeline.requests import ExportRequest, Until

runner = CliRunner()


def folder(**options) -> str:
    req = ExportRequest(**options)
    return str(default_output_dir(req, _resolve(req.model_copy(update={"weights": None}))))


def test_default_folders_name_every_option_that_changes_the_request(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(photos / "a.png")
    names = {
        "default": folder(),
        "w8a16": folder(precision="w8a16"),
        "8 gen 3": folder(soc="sm8650"),
        "until onnx": folder(until=Until.ONNX),
        "faithful": folder(graph="faithful"),
        "checkpoint": folder(weights=Path("/x/swiftformer_l1.pth")),
        "softmax": folder(attention="softmax"),
        "photos": folder(calibration=photos, calibration_count=1),
        "count": folder(calibration_count=128),
        "heldout": folder(heldout_count=4),
        "min sqnr": folder(min_sqnr=12.5),
        "mixed": folder(precision="mixed"),
        "mixed, time ratio": folder(precision="mixed", max_time_ratio=1.3),
        "mixed, min sqnr": folder(precision="mixed", min_sqnr=30.0),
        "mse": folder(calibration_method="mse"),
        "native io": folder(io="uint8-nhwc"),
        "opset": folder(opset=19),
        "size": folder(resolution=64),
        "block": folder(variant="encoder"),
    }
    assert names["default"] == "build/l1-w8a8-sm8550"
    assert names["checkpoint"] == "build/l1-w8a8-sm8550-w-swiftformer_l1"
    assert names["photos"] == "build/l1-w8a8-sm8550-cal-photos-cal1"
    assert names["until onnx"] == "build/l1-w8a8-sm8550-until-onnx"
    assert names["block"] == "build/encoder-d96x64-w8a8-sm8550"
    assert names["mixed, time ratio"] == "build/l1-mixed-sm8550-ratio1.3"
    assert len(set(names.values())) == len(names), names  # no two requests share a folder


def test_a_junk_checkpoint_says_so_whatever_the_output_folder_holds(tmp_path):
    """Before: the occupied folder's refusal hid the real problem (a file that is no checkpoint)."""
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint\n")
    occupied = tmp_path / "mine"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("my notes")
    res = runner.invoke(app, ["export", "--variant", "xs", "--resolution", "32", "--weights", str(junk),
                              "--output-dir", str(occupied)])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "junk.pth is not a PyTorch checkpoint" in res.stderr and "mine" not in res.stderr
    assert (occupied / "notes.txt").read_text() == "my notes"


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.startswith("swiftformer-qnn 0.1.0 (onnxruntime-qnn 2.7.0, QNN 2.51.0)")


def test_export_json_rerun_marks_every_stage_and_cache_clean_spares_the_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
    args = ["export", "--variant", "encoder", "--resolution", "16", "--until", "compile"]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)  # stdout is the JSON document alone
    directory = Path(summary["directory"])
    assert directory == Path("build/encoder-d96x16-w8a8-sm8550-until-compile") and not summary["reused"]
    assert "compile" in [s["name"] for s in summary["manifest"]["stages"]]

    again = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "Up to date" in again.stdout
    stage_lines = [line for line in again.stdout.splitlines() if line.startswith("│ ") and "(earlier run)" in line]
    assert len(stage_lines) == len(summary["manifest"]["stages"]), again.stdout

    shown = runner.invoke(app, ["cache"], env={"COLUMNS": "100"})
    assert shown.exit_code == 0 and "stage cache" in shown.stdout
    files = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    entries = len(list((tmp_path / "cache" / "stages").rglob("stage.json")))
    assert entries >= len(summary["manifest"]["stages"])
    cleaned = runner.invoke(app, ["cache", "clean"])
    assert cleaned.exit_code == 0, cleaned.output
    assert f"Removed {entries} stage cache entries" in cleaned.stdout
    assert not list((tmp_path / "cache" / "stages").rglob("stage.json"))
    assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == files  # the export is untouched
    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0 and "Up to date" in rerun.stdout  # the folder still holds the request


def test_a_user_folder_inside_the_cache_survives_a_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path))
    theirs = tmp_path / "stages" / "export" / "my-folder"
    theirs.mkdir(parents=True)
    (theirs / "keep.txt").write_text("mine")
    res = runner.invoke(app, ["cache", "clean"])
    assert res.exit_code == 0 and (theirs / "keep.txt").read_text() == "mine"


def test_urllib3_retries_become_one_short_progress_line_each(caplog):
    """urllib3's real retry warnings (against a closed port), inside the AI Hub client's quiet():
    short progress lines, nothing on the root logger."""
    import urllib3

    from swiftformer_qnn.profiling.aihub_client import quiet

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    said: list[str] = []
    root_records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = root_records.append
    logging.getLogger().addHandler(handler)
    try:
        with quiet(said.append):
            pool = urllib3.PoolManager(retries=urllib3.Retry(total=2, backoff_factor=0))
            with pytest.raises(urllib3.exceptions.MaxRetryError):
                pool.request("GET", f"http://127.0.0.1:{port}/api/v1/devices/")
    finally:
        logging.getLogger().removeHandler(handler)
    assert len(said) == 2, said
    assert all(line.startswith("AI Hub client: retrying /api/v1/devices/: ") and len(line) < 100 for line in said), said
    assert "retries left" in said[0] and not [r for r in root_records if r.name.startswith("urllib3")]
