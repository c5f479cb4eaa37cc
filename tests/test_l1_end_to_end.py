"""The main job as a user runs it: `swiftformer-qnn export --variant l1`, full size, through
the CLI, in a fresh process (slow tier)."""

from __future__ import annotations

import os
import subprocess
import sys

import onnx
import pytest

from swiftformer_qnn.pipeline.artifacts import read_manifest


@pytest.mark.slow
def test_export_l1_default_through_the_cli(tmp_path):
    env = {**os.environ, "SWIFTFORMER_QNN_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "l1"
    proc = subprocess.run(
        [sys.executable, "-m", "swiftformer_qnn.cli", "export", "--variant", "l1", "--output-dir", str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WEIGHTS: RANDOM" in proc.stdout and "model.ctx_qnn.bin" in proc.stdout

    m = read_manifest(out)
    assert m.request.input_shape == [1, 3, 224, 224] and m.request.precision == "w8a8"
    stages = {s.name: s.results for s in m.stages}
    assert stages["inputs"].calibration.count == 64 and stages["inputs"].heldout.count == 16
    assert stages["compile"].soc_model == 43 and stages["compile"].htp_arch == 73
    # The HTP-ready graph (issue 15's targets, read from QNN's op trace): at most 195 HTP ops, no
    # BatchNorm, no float island, no layout op inside the graph.
    compiled = stages["compile"]
    assert compiled.htp_op_count <= 195 and "Batchnorm" not in compiled.htp_op_types
    cost = compiled.graph_cost
    assert cost.float_islands == 0 and cost.layout_ops - cost.boundary_layout_ops == 0
    assert stages["verify"].quantized_vs_fp32.sqnr_db >= 10
    assert stages["verify"].emulator_vs_quantized_cpu.cosine_min > 0.99
    # Module paths survive into the exported graph: per-block attribution depends on it.
    names = [n.name for n in onnx.load(str(out / "model.onnx"), load_external_data=False).graph.node]
    assert any(n.startswith("/stage2/block9_swiftformer_encoder/attention/") for n in names)
    assert any(n.startswith("/stage3/downsample/") for n in names)

    rerun = subprocess.run(
        [sys.executable, "-m", "swiftformer_qnn.cli", "export", "--variant", "l1", "--output-dir", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert rerun.returncode == 0 and "Up to date" in rerun.stdout
