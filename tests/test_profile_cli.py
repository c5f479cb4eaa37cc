"""`swiftformer-qnn profile` through typer's CliRunner: AI Hub (the real `qai_hub` client
against the local stand-in) and the local HTP emulator."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from aihub_standin import HubStandIn, files_containing, make_export_dir, real_qdq_model, unused_port
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.measure.schema import LatencySource, load_profile
from swiftformer_qnn.model.variants import get_variant

S23U_SLUG = "samsung-galaxy-s23-ultra"
# File names carry the input size when it is not the variant's default (224; the block's 96x64).
LABELS = {"xs": "xs-r64-w8a8", "encoder": "encoder-d96x32-w8a8"}


@pytest.fixture(autouse=True)
def _wide_terminal_and_private_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps long op names at 80 columns
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def hub(token, tmp_path, monkeypatch):
    # Per-layer profiles as QNN builds the graph (fused, renamed, layout ops inserted), not one
    # op per ONNX node named the way the attribution code expects.
    with HubStandIn(token, fused=True) as standin:
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(standin.write_client_ini(tmp_path / "hubconf" / "client.ini")))
        yield standin


def invoke(*args: str):
    return CliRunner().invoke(app, ["profile", *args])


def assert_token_nowhere(token: str, result, *roots: Path) -> None:
    assert token not in result.stdout and token not in result.stderr
    assert files_containing(token, *roots) == []


# --- no token -------------------------------------------------------------------------------


def test_no_token_is_one_message_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "missing" / "client.ini"))
    # Without --from: had the default export run, build/ and the stage cache would have appeared.
    result = invoke("--device", "Galaxy S23 Ultra")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "qai-hub configure --api_token" in lines[0] and "profile emulator" in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "build").exists() and not (tmp_path / "profiles").exists()
    assert not (tmp_path / "cache").exists()


def test_a_mistyped_from_is_named_before_the_missing_token(tmp_path, monkeypatch):
    """Local and cheap, the paths given are checked first: a typo in --from said "no token"."""
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "missing" / "client.ini"))
    result = invoke("--from", str(tmp_path / "typo"))
    assert result.exit_code == 2
    assert f"{tmp_path / 'typo'} does not exist" in result.stderr and "token" not in result.stderr
    (tmp_path / "a-file").write_text("")
    result = invoke("--out", str(tmp_path / "a-file"))
    assert result.exit_code == 2 and "is a file, not a directory" in result.stderr


# --- AI Hub ---------------------------------------------------------------------------------


def test_profile_on_ai_hub(hub, exports, tmp_path, token):
    out = tmp_path / "out"
    t0 = time.monotonic()
    result = invoke(
        "--device", "Galaxy S23 Ultra", "--from", str(exports["xs"]), "--from", str(exports["encoder"]),
        "--qnn", "2.31,2.33", "--runs", "5", "--out", str(out), "--poll", "0.01",
    )
    assert result.exit_code == 0, result.output
    first_job_s = hub.first_job_submitted_at() - t0

    names = sorted(p.name for p in out.glob("*.profile.json"))
    assert names == sorted(f"{LABELS[v]}-qnn{q}-{S23U_SLUG}.profile.json" for v in ("xs", "encoder") for q in ("2.31", "2.33"))
    for name in names:
        stem = name.removesuffix(".profile.json")
        assert (out / f"{stem}.raw.json").is_file() and (out / f"{stem}.bin").is_file()
        assert f"{stem}.profile.json" in result.stdout and f"{stem}.bin" in result.stdout
        assert load_profile(out / name).source is LatencySource.AIHUB

    text = result.stdout
    assert "Per block (aihub, derived from device cycles x median of 5 runs" in text
    assert "Top 10 ops (aihub, derived from device cycles" in text
    assert "(aihub, device latency)" in text.split("xs-r64-w8a8-qnn2.31 on Samsung Galaxy S23 Ultra")[1].splitlines()[0]
    for block in ("stem", "stage0.block2", "stage3.block3", "head", "encoder"):
        assert f"\n {block} " in text or f"│ {block} " in text
    assert "NPU" in text
    # What neither names nor the uploaded graph can place: the layout transpose QNN inserts at
    # XS's image input (in the standalone block every op is the block's).
    shares = dict(re.findall(r"\n(\S+-qnn[\d.]+) on .*?Unattributed \(block `other`\): ([\d.]+)%", text, re.S))
    assert set(shares) == {f"{LABELS[v]}-qnn{q}" for v in ("xs", "encoder") for q in ("2.31", "2.33")}
    for label, share in shares.items():
        assert (0.0 < float(share) < 2.0) if label.startswith("xs") else float(share) == 0.0, (label, share)
    assert "submitted" in result.stderr and hub.url in result.stderr  # progress names jobs and their URLs
    assert_token_nowhere(token, result, out, tmp_path / "cache")

    calls = len(hub.api_calls())
    print(f"\ntime from command to first submitted AI Hub job: {first_job_s:.2f} s (2 uploads first; stand-in)")
    print(f"AI Hub API calls: {calls} for 4 profiles = {calls / 4:.1f} per profile")


def test_one_profile_counts_its_api_calls(hub, exports, tmp_path):
    result = invoke("--from", str(exports["encoder"]), "--qnn", "2.31", "--runs", "3", "--out", str(tmp_path / "o"), "--poll", "0.01")
    assert result.exit_code == 0, result.output
    by_endpoint: dict[str, int] = {}
    for r in hub.api_calls():
        key = f"{r.method} " + "/".join("<id>" if part[:1] in "jm" and part[1:2].isdigit() else part for part in r.path.split("/"))
        by_endpoint[key] = by_endpoint.get(key, 0) + 1
    # Each job is polled until it ends (the stand-in ends a job on its second status request).
    assert by_endpoint["POST /api/v1/jobs/"] == 2 and by_endpoint["POST /api/v1/models/"] == 1
    print(f"\nAI Hub API calls for one profile: {len(hub.api_calls())} "
          f"(+ {len(hub.requests) - len(hub.api_calls())} presigned transfers): {json.dumps(by_endpoint, indent=1)}")


def test_default_output_dir_is_timestamped_under_build_profiles(hub, exports, tmp_path):
    result = invoke("--device", "sm8550", "--from", str(exports["encoder"]), "--runs", "3", "--poll", "0.01")
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "build" / "profiles").iterdir()
    assert (run_dir / f"encoder-d96x32-w8a8-qnn2.37-{S23U_SLUG}.profile.json").is_file()  # AI Hub's default QAIRT
    assert (run_dir / "aihub-jobs.json").is_file()


def test_ai_hub_files_of_two_exports_of_one_variant_do_not_collide(hub, onnx_models, exports, tmp_path):
    m = onnx_models["encoder"]
    other = make_export_dir(tmp_path / "exports" / "encoder-other", qdq=m["qdq"], sim=m["sim"], variant="encoder",
                            precision="w8a8", input_shape=list(get_variant("encoder").input_shape(m["res"])),
                            request_key="other-weights-0123")
    out = tmp_path / "out"
    result = invoke("--from", str(exports["encoder"]), "--from", str(other), "--qnn", "2.31", "--runs", "3",
                    "--out", str(out), "--poll", "0.01")
    assert result.exit_code == 0, result.output
    stems = sorted(p.name.removesuffix(".profile.json") for p in out.glob("*.profile.json"))
    assert [s.split("-qnn")[0] for s in stems] == ["encoder-d96x32-w8a8-handmade", "encoder-d96x32-w8a8-other-we"]
    for stem in stems:
        assert (out / f"{stem}.raw.json").is_file() and (out / f"{stem}.bin").is_file()


def test_list_devices(hub):
    result = invoke("--device", "list")
    assert result.exit_code == 0, result.output
    assert "Samsung Galaxy S23 Ultra" in result.stdout and "qualcomm-snapdragon-8gen2" in result.stdout
    assert "sm8550" in result.stdout  # the spellings that resolve to it
    assert hub.count("GET", "/api/v1/devices/") == 1


def test_failed_compile_exits_2_with_the_job_url(hub, exports, tmp_path):
    hub.fail_compile = lambda name, options: "Graph finalize failed: op L2Norm unsupported" if "2.33" in options else None
    out = tmp_path / "out"
    result = invoke("--from", str(exports["encoder"]), "--qnn", "2.33", "--qnn", "2.31", "--out", str(out), "--poll", "0.01")
    assert result.exit_code == 2
    (failed,) = [j for j in hub.jobs.values() if j.pb.compile_job.failure_reason]
    url = f"{hub.url}/jobs/{failed.pb.compile_job.compile_job_id}/"
    assert url in result.stderr and "L2Norm unsupported" in result.stderr and "--retry-failed" in result.stderr
    assert "encoder-d96x32-w8a8-qnn2.31" in result.stdout  # the other version still profiled and shown
    assert hub.jobs_created("compile") == 2


def test_timeout_then_rerun_resumes_without_new_jobs(hub, exports, tmp_path):
    out = tmp_path / "out"
    args = ("--from", str(exports["encoder"]), "--out", str(out), "--poll", "0.01", "--runs", "3")
    hub.hold = {"compile"}
    first = invoke(*args, "--timeout", "0.3")
    assert first.exit_code == 2
    assert "still running" in first.stderr and "Rerun the same command to resume" in first.stderr
    assert "compile job j" in first.stderr and "optimizing model" in first.stderr  # state changes shown
    submitted = hub.count("POST", "/api/v1/jobs/")
    assert submitted == 1

    hub.hold = set()
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert "resumed: compile" in second.stdout
    assert hub.jobs_created("compile") == 1  # the compile job was found, not resubmitted
    assert hub.count("POST", "/api/v1/models/") == 1


def test_unreachable_ai_hub(tmp_path, monkeypatch, exports, token):
    import qai_hub.util.session as client_session

    url = f"http://127.0.0.1:{unused_port()}"
    ini = tmp_path / "hubconf" / "client.ini"
    ini.parent.mkdir()
    ini.write_text(f"[api]\napi_token = {token}\napi_url = {url}\nweb_url = {url}\n")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
    monkeypatch.setattr(client_session, "MAX_RETRIES", 1)
    monkeypatch.setattr(client_session, "BACKOFF_FACTOR", 0.01)
    result = invoke("--from", str(exports["encoder"]), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "Could not connect to Qualcomm AI Hub" in result.stderr
    assert_token_nowhere(token, result, tmp_path / "out", tmp_path / "cache")


def test_unknown_option_values_are_usage_errors(hub, exports):
    result = invoke("--from", str(exports["encoder"]), "--qnn", "two.thirty")
    assert result.exit_code == 2 and "is not a QAIRT version" in result.stderr
    assert hub.requests == []


@pytest.mark.parametrize("option, value", [
    ("--poll", "0"), ("--poll", "-1"), ("--timeout", "0"), ("--timeout", "-5"), ("--top", "0"), ("--runs", "0"),
])
def test_numeric_options_out_of_range_are_usage_errors_before_any_work(hub, exports, tmp_path, option, value):
    result = invoke("--from", str(exports["encoder"]), "--out", str(tmp_path / "out"), option, value)
    assert result.exit_code == 2
    assert "Invalid value" in result.output and option in result.output
    assert hub.requests == [] and not (tmp_path / "out").exists()


# --- the HTP emulator -----------------------------------------------------------------------


def test_profile_on_the_emulator_needs_no_token(exports, tmp_path, monkeypatch):
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-token.ini"))
    out = tmp_path / "emu"
    result = invoke("emulator", "--from", str(exports["encoder"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    (path,) = out.glob("encoder-d96x32-w8a8-qnn*-htp-emulator-*.profile.json")
    p = load_profile(path)
    assert p.source is LatencySource.EMULATOR and p.latency is None
    assert all(op.execution_cycles is not None and op.execution_time_us is None for op in p.ops)
    assert (out / path.name.replace(".profile.json", ".raw") / "qnn_profile.csv").is_file()
    text = result.stdout
    assert "HTP emulator cycles, NOT device latency" in text and "time (cycles)" in text
    assert "us" not in text.split("Per block")[1].split("Files written")[0].split()  # no microseconds anywhere
    assert "| encoder " in text.replace("│", "|")


def test_local_qnn_must_name_the_bundled_release(exports, tmp_path, monkeypatch):
    from swiftformer_qnn.htp.session import qnn_sdk_version

    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-token.ini"))
    bundled = qnn_sdk_version()  # e.g. 2.51.0
    major, minor, patch = bundled.split(".")[:3]
    prefix_of_it = f"{major}.{minor[:-1]}"  # "2.5": a string prefix of 2.51.0, not its release
    for wrong in (prefix_of_it, f"{major}.{int(minor) - 1}", f"{major}.{minor}.{int(patch) + 1}"):
        result = invoke("emulator", "--qnn", wrong, "--from", str(exports["encoder"]), "--out", str(tmp_path / "o"))
        assert result.exit_code == 2, (wrong, result.output)
        assert f"({bundled}), not {wrong}" in result.stderr
        assert not (tmp_path / "o").exists()
    result = invoke("emulator", "--qnn", f"{major}.{minor}", "--from", str(exports["encoder"]), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output


def test_exports_of_one_variant_and_precision_get_their_own_files(onnx_models, exports, tmp_path, monkeypatch):
    """Two --from exports of the encoder block at 32 px (other weights: other requests) and one at
    16 px: three profiles, none overwriting another; the same export given twice is profiled once."""
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-token.ini"))
    m32 = onnx_models["encoder"]
    m16 = real_qdq_model("encoder", 16, tmp_path / "m16")
    shape = list(get_variant("encoder").input_shape(32))
    other = make_export_dir(tmp_path / "exports" / "encoder-other-weights", qdq=m32["qdq"], sim=m32["sim"],
                            variant="encoder", precision="w8a8", input_shape=shape, request_key="other-weights-0123")
    small = make_export_dir(tmp_path / "exports" / "encoder-16", qdq=m16["qdq"], sim=m16["sim"], variant="encoder",
                            precision="w8a8", input_shape=list(get_variant("encoder").input_shape(16)))
    out = tmp_path / "emu"
    result = invoke("emulator", "--from", str(exports["encoder"]), "--from", str(other), "--from", str(small),
                    "--from", str(exports["encoder"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "holds the same export as" in result.stderr

    from swiftformer_qnn.pipeline.artifacts import read_manifest

    first = read_manifest(exports["encoder"]).request_key[:8]
    names = sorted(p.name.split("-qnn")[0] for p in out.glob("*.profile.json"))
    assert names == sorted(["encoder-d96x16-w8a8", f"encoder-d96x32-w8a8-{first}", "encoder-d96x32-w8a8-other-we"])
    assert len(list(out.glob("*.raw"))) == 3
    shapes = sorted(load_profile(p).model.input_shape[2] for p in out.glob("*.profile.json"))
    assert shapes == [16, 32, 32]


# --- without --from: the default export ---------------------------------------------------


@pytest.mark.parametrize("args, soc", [((), "sm8550"), (("emulator",), "sm8550"), (("--device", "s24u"), "sm8650")])
def test_without_from_the_default_export_of_export_is_profiled(tmp_path, monkeypatch, args, soc):
    """What reaches the export: `swiftformer-qnn export`'s own defaults, for the device's chipset."""
    import swiftformer_qnn.pipeline as pipeline
    from swiftformer_qnn.core.errors import UsageError
    from swiftformer_qnn.pipeline import ExportRequest

    asked = []

    def recorded(request, progress=None):
        asked.append(request)
        raise UsageError("recorded")

    monkeypatch.setattr(pipeline, "run_export", recorded)
    monkeypatch.setattr("swiftformer_qnn.profiling.orchestrate.check_hub_config", lambda: None)
    result = invoke(*args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "recorded" in result.stderr
    assert asked == [ExportRequest(soc=soc)]


def test_export_options_belong_to_export(exports):
    for option in ("--variant", "--precision", "--graph", "--no-encoder", "--force", "--resolution"):
        result = invoke("--from", str(exports["encoder"]), option, "x")
        assert result.exit_code == 2 and "No such option" in result.output


@pytest.mark.parametrize("device, command", [("emulator", "profile emulator"), ("adb", "profile phone"),
                                             ("adb:R5CW40", "profile phone")])
def test_a_device_of_another_mode_points_at_its_command(exports, device, command, tmp_path):
    result = invoke("--device", device, "--from", str(exports["encoder"]), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    (line,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert f"swiftformer-qnn {command}" in line and not (tmp_path / "out").exists()


def test_both_graph_forms_are_profiled_side_by_side_and_reported_as_two_rows(hub, tmp_path):
    from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
    from swiftformer_qnn.report.build import make_report

    built = [run_export(ExportRequest(variant="encoder", resolution=16, graph=g, calibration_count=8, heldout_count=2,
                                      until=Until.QUANTIZE)).directory for g in ("htp", "faithful")]
    out = tmp_path / "out"
    result = invoke("--from", str(built[0]), "--from", str(built[1]), "--out", str(out), "--runs", "3", "--poll", "0.01")
    assert result.exit_code == 0, result.output
    profiles = {load_profile(p).model.graph: p for p in out.glob("*.profile.json")}
    assert profiles["htp"].name == f"encoder-d96x16-w8a8-qnn2.37-{S23U_SLUG}.profile.json"
    assert profiles["faithful"].name == f"encoder-d96x16-w8a8-faithful-qnn2.37-{S23U_SLUG}.profile.json"
    # AI Hub compiled two different graphs (the uploads), one per form.
    uploads = [m.data for m in hub.models.values() if m.pb.model_type == 6]  # MODEL_TYPE_ONNX
    assert len(uploads) == 2 and uploads[0] != uploads[1]

    report = make_report([out], out=tmp_path / "report").report
    rows = {m.graph: m for m in report.models}
    assert set(rows) == {"htp", "faithful"} and rows["htp"].id != rows["faithful"].id
    assert "HTP-ready graph" in rows["htp"].label and "graph" not in rows["faithful"].label


def test_without_from_an_export_directory_of_another_request_is_refused(onnx_models, tmp_path, monkeypatch):
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-token.ini"))
    m = onnx_models["encoder"]
    # Where the default export goes, holding another request (a hand-made export).
    occupied = make_export_dir(tmp_path / "build" / "l1-w8a8-sm8550", qdq=m["qdq"], sim=m["sim"],
                               variant="encoder", precision="w8a8", input_shape=[1, 96, 16, 16])
    before = (occupied / "manifest.json").read_bytes()
    refused = invoke("emulator", "--out", str(tmp_path / "out"))
    assert refused.exit_code == 2
    (line,) = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert "holds an export of a different request" in line
    assert "swiftformer-qnn export --force" in line and "--from DIR" in line
    assert "or choose --output-dir" not in line  # profile has no such option
    assert (occupied / "manifest.json").read_bytes() == before and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_without_from_the_default_export_is_made_and_profiled(hub, tmp_path):
    result = invoke("--out", str(tmp_path / "out"), "--runs", "3", "--poll", "0.01")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == ["l1-w8a8-sm8550"]
    (path,) = (tmp_path / "out").glob("*.profile.json")
    assert path.name == f"l1-w8a8-qnn2.37-{S23U_SLUG}.profile.json"
    assert load_profile(path).model.input_shape == [1, 3, 224, 224]
    (uploaded,) = [m.data for m in hub.models.values() if m.pb.model_type == 6]  # MODEL_TYPE_ONNX
    assert uploaded == (tmp_path / "build" / "l1-w8a8-sm8550" / "model.qdq.onnx").read_bytes()
    assert "Export PyTorch -> ONNX" in result.stderr  # the export's stage progress


# --- the emulator runs the export's own compile ---------------------------------------------


@pytest.fixture(scope="module")
def compiled_export(tmp_path_factory) -> Path:
    """A real export of the block at 16 px, through its compile stage (context binary, compile.json)."""
    from swiftformer_qnn.pipeline import ExportRequest, Until, run_export

    root = tmp_path_factory.mktemp("compiled-export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWIFTFORMER_QNN_CACHE", str(root / "cache"))
        return run_export(ExportRequest(variant="encoder", resolution=16, calibration_count=8, heldout_count=2,
                                        until=Until.COMPILE, output_dir=root / "export")).directory


def test_local_profile_runs_an_fp16_exports_own_binary(tmp_path, monkeypatch):
    """fp16: the binary was compiled from the float graph the quantize stage passed through."""
    from swiftformer_qnn.pipeline import ExportRequest, Until, run_export

    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-token.ini"))
    export = run_export(ExportRequest(variant="encoder", resolution=16, precision="fp16", heldout_count=2,
                                      until=Until.COMPILE, output_dir=tmp_path / "fp16")).directory
    result = invoke("emulator", "--from", str(export), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "Ran the export's own context binary" in result.stdout
    (path,) = (tmp_path / "out").glob("encoder-*.profile.json")
    assert load_profile(path).toolchain.runtime == "precompiled_qnn_onnx"


def _copy_export(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _tree_hashes(d: Path) -> dict[str, str]:
    from swiftformer_qnn.core.atomic import sha256_file

    return {str(p.relative_to(d)): sha256_file(p) for p in sorted(d.rglob("*")) if p.is_file()}


def test_local_profile_runs_the_exports_own_context_binary(compiled_export, tmp_path, monkeypatch):
    from swiftformer_qnn.htp.record import read_compile_record
    from swiftformer_qnn.measure.attribution import unattributed_share

    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-token.ini"))
    before = _tree_hashes(compiled_export)
    record = read_compile_record(compiled_export / "compile.json")
    result = invoke("emulator", "--from", str(compiled_export), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "running the export's own context binary (model.ctx_qnn.bin" in result.stderr
    assert f"sha256 {record.context_binary_sha256[:12]} as in compile.json and the manifest" in result.stdout
    assert "not compiled again" in result.stdout
    (path,) = (tmp_path / "out").glob("encoder-*.profile.json")
    p = load_profile(path)
    # Onnxruntime's name for a precompiled EP-context model: the session loaded the binary, it compiled nothing.
    assert p.toolchain.runtime == "precompiled_qnn_onnx" and p.toolchain.qnn_version == record.qnn_version
    assert "the export's own context binary" in p.provenance.note
    assert len([op for op in p.ops if op.op_type not in ("Input", "Output")]) == record.htp_op_count
    assert unattributed_share(p) < 0.05  # the compile-time op trace and the QDQ graph attribute the ops
    assert _tree_hashes(compiled_export) == before  # the export is only read


def test_local_profile_compiles_again_only_without_a_binary_or_for_another_qnn(compiled_export, tmp_path, monkeypatch):
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-token.ini"))
    no_binary = _copy_export(compiled_export, tmp_path / "no-binary")
    (no_binary / "model.ctx_qnn.bin").unlink()
    result = invoke("emulator", "--from", str(no_binary), "--out", str(tmp_path / "o1"))
    assert result.exit_code == 0, result.output
    assert "model.qdq.onnx compiled again for this run: the export's model.ctx_qnn.bin is missing" in result.stdout
    (path,) = (tmp_path / "o1").glob("encoder-*.profile.json")
    assert load_profile(path).toolchain.runtime == "onnx"

    other_qnn = _copy_export(compiled_export, tmp_path / "other-qnn")
    manifest = json.loads((other_qnn / "manifest.json").read_text())
    (stage,) = [s for s in manifest["stages"] if s["name"] == "compile"]
    stage["results"]["qnn_version"] = "2.50.40"
    (other_qnn / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("emulator", "--from", str(other_qnn), "--out", str(tmp_path / "o2"))
    assert result.exit_code == 0, result.output
    assert "compiled again for this run: the export was compiled with QNN 2.50.40; the emulator runs" in result.stdout


def test_local_profile_refuses_a_binary_that_is_not_the_recorded_one(compiled_export, tmp_path, monkeypatch):
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-token.ini"))
    damaged = _copy_export(compiled_export, tmp_path / "damaged")
    binary = damaged / "model.ctx_qnn.bin"
    data = bytearray(binary.read_bytes())
    data[len(data) // 2] ^= 0xFF
    binary.write_bytes(bytes(data))
    result = invoke("emulator", "--from", str(damaged), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the export's compile does not match its manifest (model.ctx_qnn.bin was changed)" in result.stderr
    assert "Run the same export again: it rebuilds the files that no longer match its manifest." in result.stderr
    assert not (tmp_path / "o").exists()  # refused before any run


@pytest.mark.parametrize("option, value", [("--timeout", "nan"), ("--poll", "nan"), ("--timeout", "0")])
def test_a_wait_that_is_no_positive_number_of_seconds_is_refused_before_any_work(option, value, tmp_path):
    """`nan <= 0` is False: a NaN timeout or poll interval passed the check."""
    result = CliRunner().invoke(app, ["profile", "--out", str(tmp_path / "o"), option, value])
    assert result.exit_code == 2, result.output
    assert "is not a positive number of seconds" in result.output
    assert not (tmp_path / "o").exists()
