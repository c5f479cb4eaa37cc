"""`swiftformer-qnn export` through the CLI: what reaches the user and the exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.htp.record import read_compile_record

runner = CliRunner()


def test_export_encoder_block_through_the_cli(tmp_path):
    out = tmp_path / "enc"
    res = runner.invoke(app, ["export", "--variant", "encoder", "--resolution", "16", "--calibration-count", "4",
                              "--heldout-count", "2", "--output-dir", str(out)],
                        # A cache of its own: an earlier test's export of the same request would make
                        # this one's stages cache hits, whose summary shows the earlier run's times.
                        env={"COLUMNS": "80", "SWIFTFORMER_QNN_CACHE": str(tmp_path / "cache")})
    assert res.exit_code == 0, res.output
    # The stage table fits 80 columns, in one piece, with every stage's time whole. (The Next: command
    # after it is printed whole, a long temporary path included: tests/test_eighty_columns.py.)
    assert all(len(line) <= 80 for line in res.stdout.split("\nNext:")[0].splitlines()), res.stdout
    assert res.stdout.count("┏") == 1, res.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(f"{s['wall_s']:.2f}" in res.stdout for s in manifest["stages"]), res.stdout
    assert "WEIGHTS: RANDOM" in res.output
    assert "model.ctx_qnn.bin" in res.output and "SQNR" in res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["request"]["input_shape"] == [1, 96, 16, 16]

    again = runner.invoke(app, ["export", "--variant", "encoder", "--resolution", "16", "--calibration-count", "4",
                                "--heldout-count", "2", "--output-dir", str(out)])
    assert again.exit_code == 0 and "Up to date" in again.output


@pytest.mark.parametrize(
    "args, text",
    [
        (["--variant", "l2"], "Unknown variant 'l2'. Choose one of: xs, s, l1, l3, encoder."),
        (["--precision", "int4"], "Unknown precision 'int4'"),
        (["--soc", "sm1234"], "Unknown SoC 'sm1234'"),
        (["--until", "everything"], "Unknown --until 'everything'"),
        (["--weights", "/nonexistent/l1.pth"], "Weights file /nonexistent/l1.pth does not exist."),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, text):
    res = runner.invoke(app, ["export", *args, "--output-dir", str(tmp_path / "o")])
    assert res.exit_code == 2
    # One line, nothing before it (an empty progress display left a blank line first).
    assert res.stderr.splitlines() == [res.stderr.strip()] and res.stderr.startswith("error: "), res.stderr
    assert text in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, text",
    [
        (["export", "--bogus"], "No such option: --bogus. See 'swiftformer-qnn export --help'."),
        (["export", "--calibration-count", "abc"], "Invalid value for '--calibration-count': "),
        (["export", "--calibraton-count", "3"], "--calibration-count"),  # click's suggestion kept
        (["profile", "estimate", "--bogus"], "No such option: --bogus (Possible options: --out). "
                                             "See 'swiftformer-qnn profile estimate --help'."),
        (["compile"], "Missing argument 'MODEL'. See 'swiftformer-qnn compile --help'."),
        (["--bogus"], "No such option: --bogus. See 'swiftformer-qnn --help'."),
        (["export", "--variant"], "Option '--variant' requires an argument. See 'swiftformer-qnn export --help'."),
    ],
)
def test_a_usage_error_click_finds_is_one_line_and_exit_2(args, text):
    """What click refuses while parsing (an unknown option, a value that does not parse, a
    missing argument) reads like every other refusal: one line saying what is wrong and where
    the usage is, not typer's usage, hint and boxed panel."""
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [res.stderr.strip()] and res.stderr.startswith("error: "), res.stderr
    assert text in res.stderr
    assert "╭" not in res.output and res.stdout == ""


def test_variants_lists_published_figures():
    res = runner.invoke(app, ["variants"])
    assert res.exit_code == 0
    for needle in ("SwiftFormer-L1", "12.1", "80.9", "1x96x64x64"):
        assert needle in res.output


def test_compile_an_existing_qdq_model(tmp_path):
    export_dir = tmp_path / "enc"
    res = runner.invoke(app, ["export", "--variant", "encoder", "--resolution", "16", "--calibration-count", "4",
                              "--heldout-count", "2", "--until", "quantize", "--output-dir", str(export_dir)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "ctx"
    res = runner.invoke(app, ["compile", str(export_dir / "model.qdq.onnx"), "--soc", "8gen3", "--output-dir", str(out)])
    assert res.exit_code == 0, res.output
    compiled = read_compile_record(out / "compile.json")
    assert (compiled.soc, compiled.soc_model, compiled.htp_arch) == ("sm8650", 57, 75)
    assert (out / "model.ctx_qnn.bin").stat().st_size > 0
    # `profile --from` needs an export (it attributes ops to the variant's blocks): the hint says so
    # instead of suggesting the compile directory, which profile refuses.
    said = " ".join(res.output.split())
    assert "per-block profiles need an export" in said and "swiftformer-qnn export --variant VARIANT" in said
    assert f"--from {out}" not in said.replace("\n", "")

    not_onnx = tmp_path / "x.onnx"
    not_onnx.write_text("hello")
    res = runner.invoke(app, ["compile", str(not_onnx)])
    assert res.exit_code == 2 and "is not an ONNX model" in res.output


def test_export_with_qnn_compiles_each_version_beside_the_export(tmp_path):
    # 2.51 is the main environment's toolchain: no install needed, so this runs in the default tier.
    out = tmp_path / "enc"
    res = runner.invoke(app, ["export", "--variant", "encoder", "--resolution", "16", "--calibration-count", "4",
                              "--heldout-count", "2", "--output-dir", str(out), "--qnn", "2.51"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "qnn-versions" / "cross_version.json").read_text())
    (version,) = report["versions"]
    assert version["qnn_version"] == "2.51.0" and version["status"] == "ok"
    assert (out / "qnn-versions" / "qnn-2.51.0").is_dir()
    assert "nothing" in res.output and "device latency" in res.output

    res = runner.invoke(app, ["export", "--variant", "encoder", "--qnn", "3.0", "--output-dir", str(tmp_path / "x")])
    assert res.exit_code == 2 and "Unknown QNN version '3.0'" in res.output
    assert not (tmp_path / "x").exists()


def test_qnn_with_until_onnx_is_refused_before_any_work(tmp_path):
    res = runner.invoke(app, ["export", "--variant", "encoder", "--until", "onnx", "--qnn", "2.51",
                              "--output-dir", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--until onnx" in res.output and not (tmp_path / "o").exists()


def test_compile_qnn_on_a_non_onnx_file_is_one_line(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_text("hello")
    res = runner.invoke(app, ["compile", str(bad), "--qnn", "2.51"])
    assert res.exit_code == 2 and "is not an ONNX model" in res.output and "Traceback" not in res.output
