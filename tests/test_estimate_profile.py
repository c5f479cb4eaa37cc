"""`profile estimate`: QNN's HTP estimator per block, from real exports of real graphs.

The exports hold real QDQ SwiftFormer graphs (qdq_fixtures); the estimates are made by the
QNN library during the test. Op mapping is checked on XS, whose graph has every kind of block.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.measure.attribution import model_blocks, unattributed_share
from swiftformer_qnn.measure.schema import LatencySource, OpRecord, block_times, load_profile

LABEL = "estimated (QNN Hextimate, SA8255P proxy for SM8550)"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _wide_terminal_and_private_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-token.ini"))  # no AI Hub token needed
    monkeypatch.chdir(tmp_path)


def invoke(*args: str):
    return CliRunner().invoke(app, ["profile", *args])


@pytest.fixture
def estimated(exports, tmp_path):
    out = tmp_path / "est"
    result = invoke("estimate", "--from", str(exports["xs"]), "--from", str(exports["encoder"]),
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    return result, out


def test_every_traced_op_reaches_a_block(estimated):
    """XS at 64 px: each op of the simulated schedule goes to its block through its QNN op id,
    its QNN name and the op trace; what stays unattributed is under 5% of the estimate."""
    _, out = estimated
    (path,) = out.glob("xs-r64-w8a8-qnn*-qnn-hextimate-sa8255p-proxy-for-sm8550.profile.json")
    p = load_profile(path)
    assert p.source is LatencySource.ESTIMATE and p.latency is None and not p.is_device_latency
    assert p.estimate.label == LABEL and p.estimate.proxy_soc_model == 52 and p.target.htp_arch == 73
    blocks = block_times(p)
    assert set(model_blocks("xs")) <= set(blocks)  # every block of XS has estimated time
    assert unattributed_share(p) < 0.05
    # Blocks (with `other`: idle cycles, unnamed ops) add up to the graph's estimate.
    assert sum(b.time for b in blocks.values()) == pytest.approx(p.estimate.span_cycles / p.estimate.sim_core_mhz)
    assert p.estimate.span_cycles == pytest.approx(p.estimate.cycles, abs=max(10, 1e-4 * p.estimate.cycles))
    assert all(op.estimate is not None for op in p.ops if op.op_type != "idle")
    assert {op.attribution.via for op in p.ops if op.attribution} <= {"name", "op_trace", "position"}


def test_the_terminal_says_what_the_figures_are(estimated):
    result, out = estimated
    text = result.stdout
    assert f"{LABEL}, NOT device latency" in text
    assert "Critical path: the simulated schedule spans" in text and "Input Fill" in text
    assert "device latency)" not in text.replace("NOT device latency", "")
    for raw in out.glob("*.raw"):  # QNN's own outputs stay with the profile; the proxy's binary does not
        assert {"estimate.csv", "estimate_qnn.log", "estimate_trace.json", "estimate.json"} <= {
            f.name for f in raw.iterdir()}
        assert not list(raw.glob("*.bin")) or all("schematic" in f.name for f in raw.glob("*.bin"))


def test_two_runs_write_the_same_estimate(exports, tmp_path):
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        result = invoke("estimate", "--from", str(exports["encoder"]), "--out", str(out), *(("--json",) if i else ()))
        assert result.exit_code == 0, result.output
        (path,) = out.glob("*.profile.json")
        p = load_profile(path)
        runs.append((p.estimate.cycles, [(op.name, op.execution_cycles, op.attribution) for op in p.ops]))
    assert runs[0] == runs[1]
    summary = json.loads(result.stdout)  # the second run's --json: the profile it wrote, nothing else
    assert summary["backend"] == "estimate" and summary["profiles"][0]["files"]["profile"] == str(path)
    assert summary["profiles"][0]["source"] == "estimate" and summary["profiles"][0]["latency"] is None


def test_a_rerun_replaces_its_own_raw_folder_and_never_a_users(exports, tmp_path):
    """The raw folder is replaced only when its marker says this tool wrote it: a folder of the
    user's with the same name is refused by name, in one line, and left as it was."""
    out = tmp_path / "est"
    assert invoke("estimate", "--from", str(exports["encoder"]), "--out", str(out)).exit_code == 0
    (raw,) = out.glob("*.raw")
    assert json.loads((raw / "made_by.json").read_text())["kind"] == "swiftformer-qnn.estimate-raw"
    assert invoke("estimate", "--from", str(exports["encoder"]), "--out", str(out)).exit_code == 0  # its own: replaced
    (raw / "made_by.json").unlink()
    (raw / "my-notes.txt").write_text("mine")
    kept = sorted(p.name for p in raw.iterdir())
    result = invoke("estimate", "--from", str(exports["encoder"]), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert f"{raw.name} exists and is not a raw folder this tool wrote" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert sorted(p.name for p in raw.iterdir()) == kept and (raw / "my-notes.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no work folder left behind


def test_device_estimate_is_the_estimate_subcommand(exports, tmp_path):
    """`profile --device estimate`, as issue 21 and older docs spell it, runs `profile estimate`."""
    figures = []
    for i, args in enumerate((("estimate",), ("--device", "estimate"))):
        out = tmp_path / f"run{i}"
        result = invoke(*args, "--from", str(exports["encoder"]), "--out", str(out))
        assert result.exit_code == 0, result.output
        (path,) = out.glob("*.profile.json")
        p = load_profile(path)
        assert p.source is LatencySource.ESTIMATE
        figures.append((path.name, p.estimate.cycles, [(op.name, op.execution_cycles) for op in p.ops]))
    assert figures[0] == figures[1]


def test_device_estimate_refuses_ai_hubs_options_in_one_line(exports, tmp_path):
    out = tmp_path / "est"
    result = invoke("--device", "estimate", "--from", str(exports["encoder"]), "--runs", "5", "--new-jobs",
                    "--out", str(out))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--runs, --new-jobs only apply to AI Hub" in lines[0]
    assert not out.exists()


def test_an_architecture_without_an_estimator_soc_is_refused_before_any_work(exports, tmp_path):
    manifest = exports["encoder"] / "manifest.json"
    data = json.loads(manifest.read_text())
    data["request"].update(soc="sm8650", soc_model=57, htp_arch=75)
    manifest.write_text(json.dumps(data))
    out = tmp_path / "est"
    result = invoke("estimate", "--from", str(exports["encoder"]), "--out", str(out))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No SoC of HTP v75 has QNN's performance estimator" in lines[0]
    assert not out.exists()


def test_a_damaged_export_is_one_line_and_leaves_nothing(exports, tmp_path):
    (exports["encoder"] / "model.qdq.onnx").write_bytes(b"not an onnx model")
    out = tmp_path / "est"
    result = invoke("estimate", "--from", str(exports["encoder"]), "--out", str(out))
    assert result.exit_code == 2, result.output
    # Refused when the export is read (its manifest no longer vouches for the file), before any compile.
    assert len(result.stderr.strip().splitlines()) == 1 and "model.qdq.onnx was changed" in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_check_outputs_has_nothing_to_run_on_an_estimate(exports):
    """--check-outputs runs held-out inputs on a phone through AI Hub: `profile estimate` has no such option."""
    result = invoke("estimate", "--from", str(exports["encoder"]), "--check-outputs")
    assert result.exit_code == 2 and "No such option" in result.output


def test_ops_at_the_graphs_ends_belong_to_the_first_and_last_block():
    """In a known execution order, what runs before any op of a later block can only work on the
    graph input (the stem's), and what runs after every op of the earlier blocks on the output."""
    from swiftformer_qnn.measure.attribution import attribute_ops

    def op(name: str, *nodes: str) -> OpRecord:
        return OpRecord(name=name, op_type="x", onnx_nodes=list(nodes))

    ops = [op("Input"), op("image_QuantizeLinear", "image_QuantizeLinear"),
           op("Transpose_token_9", "DequantizeLinear_token_1", "Transpose_token_9"),
           op("/stem/conv1/Conv"), op("/stage0/block0_conv_encoder/dwconv/Conv"),
           op("Reshape_token_3", "Reshape_token_3"),  # between blocks: nothing says whose
           op("/stage3/block3_swiftformer_encoder/Add_1"), op("/head/Gemm"), op("Transpose_token_7"), op("Output")]
    ordered = [o.attribution.block for o in attribute_ops(ops, "xs", in_execution_order=True)]
    assert ordered == ["stem", "stem", "stem", "stem", "stage0.block0", "other", "stage3.block3", "head", "head",
                       "head"]
    # Without a known order nothing moves.
    unordered = [o.attribution.block for o in attribute_ops(ops, "xs")]
    assert unordered[0] == unordered[2] == unordered[-1] == "other"


# --- gate latency on estimates ---------------------------------------------------------------


def _slower(profile_path, out_path, block: str, factor: float) -> None:
    """The same estimate with one block's ops `factor` slower (and the total by as much): what a
    change to that block's graph would show, written the way a profile file is."""
    from swiftformer_qnn.measure.schema import Profile

    p = load_profile(profile_path)
    ops, added = [], 0.0
    for op in p.ops:
        if op.attribution and op.attribution.block == block and op.execution_time_us:
            added += op.execution_time_us * (factor - 1)
            op = op.model_copy(update={"execution_time_us": op.execution_time_us * factor,
                                       "execution_cycles": op.execution_cycles * factor})
        ops.append(op)
    est = p.estimate.model_copy(update={"us": p.estimate.us + added})
    Profile.model_validate(p.model_copy(update={"ops": ops, "estimate": est}).model_dump()).save(out_path)


def gate(*args: str):
    return CliRunner().invoke(app, ["gate", "latency", *args])


def test_gate_fails_on_a_5_percent_slower_block_and_passes_an_unchanged_estimate(estimated, tmp_path):
    _, out = estimated
    (base,) = out.glob("xs-*.profile.json")
    same = tmp_path / "same" / base.name
    same.parent.mkdir()
    same.write_bytes(base.read_bytes())
    passed = gate("--baseline", str(base), "--candidate", str(same))
    assert passed.exit_code == 0, passed.output
    assert "deterministic" in passed.stdout

    slower = tmp_path / "slower" / base.name
    slower.parent.mkdir()
    _slower(base, slower, "stage2.block5", 1.05)
    failed = gate("--baseline", str(base), "--candidate", str(slower))
    assert failed.exit_code == 1, failed.output
    assert "stage2.block5" in failed.stdout and "+5.0%" in failed.stdout
    regressed = [line for line in failed.stdout.splitlines() if "regression" in line and "│" in line]
    assert len(regressed) == 1 and "stage2.block5" in regressed[0]
    assert "FAIL stage2.block5 slower: +5.0%" in failed.stdout
    # The threshold is the user's: at 6% the same change passes.
    assert gate("--baseline", str(base), "--candidate", str(slower), "--threshold", "6%").exit_code == 0


def test_an_estimate_is_never_gated_against_a_device_profile(estimated, tmp_path):
    _, out = estimated
    (est,) = out.glob("encoder-*.profile.json")
    device = sorted((ROOT / "profiles" / "reference").glob("*encoder*.profile.json"))[0]
    result = gate("--baseline", str(device), "--candidate", str(est), "--allow-mismatch")
    assert result.exit_code == 2 and "never gated against another source" in result.stderr


# --- report: estimates as a source of their own ---------------------------------------------

def test_report_sets_the_block_against_l1_per_qnn_version_beside_published_figures(tmp_path):
    """The committed estimates of L1 and the encoder block (QNN 2.47-2.51, made by the real
    estimator) beside the published S23 figures: columns of their own, a block-vs-L1 row per
    version, charts."""
    from swiftformer_qnn.report.model import Report

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(ROOT / "profiles" / "estimate"),
                                      str(ROOT / "profiles" / "reference"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = Report.model_validate_json((out / "report.json").read_text())
    estimate_cols = [c for c in report.columns if c.setting.source is LatencySource.ESTIMATE]
    published_cols = [c for c in report.columns if c.setting.source is LatencySource.PUBLISHED]
    assert [c.qnn_version for c in estimate_cols] == ["2.47.0", "2.48.40", "2.49.40", "2.50.40", "2.51.0"]
    assert len(published_cols) == 3
    # Every estimate column holds estimates only, labelled as such.
    for cell in report.headline:
        col = next(c for c in report.columns if c.id == cell.column_id)
        assert cell.statistic.startswith("estimated (QNN Hextimate") == (col.setting.source is LatencySource.ESTIMATE)
    shares = {s.column_id: s.ratio for s in report.encoder_shares}
    assert all(c.id in shares for c in estimate_cols)
    assert {"models_by_version.png"} <= {p.name for p in out.iterdir()}
    md = (out / "report.md").read_text()
    assert "estimate (not device latency)" in md and "Estimate columns" in md


def test_compare_refuses_an_estimate_against_a_measurement(tmp_path):
    est = sorted((ROOT / "profiles" / "estimate").glob("encoder-*qnn2.51.0*.profile.json"))[0]
    ref = sorted((ROOT / "profiles" / "reference").glob("*encoder*.profile.json"))[0]
    result = CliRunner().invoke(app, ["report", "--compare", str(ref), str(est), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 2 and "cannot set an estimate against a measurement" in result.stderr


# --- the project's own CI: the real estimate of the default exports, gated ------------------


@pytest.mark.slow
def test_ci_gates_the_estimate_of_the_default_exports_against_the_committed_baseline(tmp_path):
    """What CI runs: `profile estimate` of the default export (L1) and of the encoder block's
    default export, made as a user would (full size), and `gate latency` holds each against its
    committed baseline (deterministic, 2%)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SWIFTFORMER_QNN_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    out = tmp_path / "estimate"
    cli = [sys.executable, "-m", "swiftformer_qnn.cli"]
    for args in (["profile", "estimate", "--out", str(out)], ["export", "--variant", "encoder"],
                 ["profile", "estimate", "--from", "build/encoder-d96x64-w8a8-sm8550", "--out", str(out)]):
        proc = subprocess.run([*cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
    for variant in ("l1", "encoder"):
        (path,) = out.glob(f"{variant}-w8a8-qnn*.profile.json")
        p = load_profile(path)
        assert unattributed_share(p) < 0.05
        blocks = block_times(p)
        assert sum(b.time for b in blocks.values()) == pytest.approx(p.estimate.us, rel=0.01)
        baseline = ROOT / "profiles" / "baselines" / f"{variant}-w8a8-qnn-hextimate-sa8255p-proxy-for-sm8550-estimate"
        gated = subprocess.run([sys.executable, "-m", "swiftformer_qnn.cli", "gate", "latency", "--baseline",
                                str(baseline), "--candidate", str(path)], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
        assert gated.returncode == 0, gated.stdout[-3000:] + gated.stderr[-2000:]
        assert "deterministic" in gated.stdout


# --- the export's estimate stage ---------------------------------------------------------------


def _export(out, *args: str):
    result = CliRunner().invoke(app, ["export", "--variant", "encoder", "--resolution", "16", "--calibration-count", "4",
                                      "--heldout-count", "2", "--until", "compile", "--output-dir", str(out), *args])
    assert result.exit_code == 0, result.output
    return result


def test_the_export_summary_shows_the_estimate(tmp_path):
    from swiftformer_qnn.pipeline.artifacts import read_manifest

    htp = _export(tmp_path / "htp")
    assert f"{LABEL}, NOT device latency" in " ".join(htp.stdout.split())
    est = read_manifest(tmp_path / "htp").stage("estimate").results
    assert est.proxy_soc == "SA8255P" and est.us > 0 and (tmp_path / "htp" / "estimate.json").is_file()


@pytest.mark.slow  # two more exports
def test_compare_sets_the_estimates_of_two_graphs_side_by_side(tmp_path):
    from swiftformer_qnn.pipeline.artifacts import read_manifest

    _export(tmp_path / "htp")
    est = read_manifest(tmp_path / "htp").stage("estimate").results
    _export(tmp_path / "faithful", "--graph", "faithful")
    cmp = CliRunner().invoke(app, ["report", "--compare", str(tmp_path / "faithful"), str(tmp_path / "htp"),
                                   "--out", str(tmp_path / "cmp")])
    assert cmp.exit_code == 0, cmp.output
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["estimate_label"] == LABEL and data["estimated_us_b"] == pytest.approx(est.us)
    assert data["estimated_us_a"] > 0
    assert "Estimated accelerator time (us)" in (tmp_path / "cmp" / "compare.md").read_text()


def test_an_export_for_an_architecture_without_an_estimator_says_so(tmp_path):
    from swiftformer_qnn.pipeline.artifacts import read_manifest

    result = _export(tmp_path / "v75", "--soc", "sm8650")
    assert read_manifest(tmp_path / "v75").stage("estimate") is None
    assert "No estimated time: QNN's performance estimator runs for no HTP v75 SoC" in " ".join(result.stdout.split())
