"""`diagnose` on a real (small) export: per-block SQNR fp32 -> CPU QDQ -> HTP emulator; and the
localization's naming of an op by block and part."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.measure.attribution import model_blocks
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
from swiftformer_qnn.pipeline.localize import Tap, TensorFigures, _finding, channel_map, describe


@pytest.fixture(scope="module")
def xs_compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "xs"
    run_export(ExportRequest(variant="xs", resolution=64, calibration_count=8, heldout_count=4, until=Until.COMPILE,
                             output_dir=out))
    return out


def test_diagnose_writes_a_per_block_table_of_every_block(xs_compiled, tmp_path):
    res = CliRunner().invoke(app, ["diagnose", str(xs_compiled), "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "d" / "diagnose.json").read_text())
    assert [b["block"] for b in data["blocks"]] == list(model_blocks("xs"))  # stem ... head, in order
    assert data["graph"] == "model.fold.onnx"
    for b in data["blocks"]:
        assert b["fp32_available"], b["block"]
        # Realistic weights, 8 calibration images: quantization costs something, the HTP matches the CPU.
        assert 5 < b["cpu_qdq_vs_fp32_db"] < 60 and abs(b["htp_vs_fp32_db"] - b["cpu_qdq_vs_fp32_db"]) < 3
    assert data["divergence"]["found"] is False
    md = (tmp_path / "d" / "diagnose.md").read_text()
    assert "| stage2.block5 | swiftformer_encoder |" in md and "HTP vs CPU QDQ: no single op stands out" in md
    assert "stage3.block3" in res.output and "diagnose.json" in res.output


def test_diagnose_names_missing_files_in_one_line(tmp_path, xs_compiled):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "manifest.json").write_text((xs_compiled / "manifest.json").read_text())
    res = CliRunner().invoke(app, ["diagnose", str(partial)])
    assert res.exit_code == 2
    assert "heldout.npy is missing" in res.output
    # The refusal alone: nothing said of running models that never ran.
    assert res.stderr.splitlines() == [res.stderr.strip()] and res.stderr.startswith("error: "), res.stderr
    assert "Traceback" not in res.output and not (partial / "diagnose").exists()


def test_a_located_op_is_named_by_block_part_and_channel():
    node = onnx.helper.make_node("BatchNormalization", ["a", "g", "b", "m", "v"], ["y"],
                                 name="/stage2/block5_swiftformer_encoder/mlp/norm/BatchNormalization")
    tap = Tap("y", "y_q", node, np.float32(0.1), np.uint8(128), 8)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 4, 4))
    cpu = x * 1.0 + np.array([0.1, 0.8, -0.2]).reshape(1, 3, 1, 1)
    htp = cpu.copy()
    htp[:, 1] -= 1.6  # channel 1's bias flipped
    figures = TensorFigures(0, 5.0, 45.0, 8, channel_map(x, cpu, x, htp))
    finding = _finding(tap, figures, cpu, htp, "xs")
    assert finding["block"] == "stage2.block5" and finding["part"] == "mlp" and finding["channel"] == 1
    assert finding["fit_cpu"]["intercept"] == pytest.approx(0.8) and finding["fit_htp"]["intercept"] == pytest.approx(-0.8)
    assert describe(finding).startswith("the HTP departs at stage2.block5 SwiftFormerEncoder / mlp: BatchNormalization")
    assert "channel 1 maps differently: bias +0.8 on the CPU vs -0.8 on the HTP" in describe(finding)


def test_an_out_that_is_a_file_is_refused_before_the_work(tmp_path, xs_compiled, monkeypatch):
    """It ran the QDQ model and the emulator over every tensor, then failed to write."""
    import swiftformer_qnn.pipeline.diagnose as diagnose

    def must_not_run(_export_dir):
        raise AssertionError("diagnose ran before its --out was checked")

    monkeypatch.setattr(diagnose, "diagnose_export", must_not_run)
    (tmp_path / "a-file").write_text("mine")
    res = CliRunner().invoke(app, ["diagnose", str(xs_compiled), "--out", str(tmp_path / "a-file")])
    assert res.exit_code == 2, res.output
    assert "is a file, not a directory" in res.output and (tmp_path / "a-file").read_text() == "mine"
