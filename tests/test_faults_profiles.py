"""The fault battery, second round: profile files read as what they are. onnxruntime-qnn's own
profiling CSV and qnn-profile-viewer's CSV share a header and are told apart by their rows;
both keep their per-op rows; the emulator's output is never device latency; an import without
per-op rows says so and is no per-block baseline."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from fault_checks import one_error_line
from qnn_viewer_formats import EMULATOR_CSV, device_inferences, write_csv
from test_qnn_viewer_import import GRAPH, context, exports  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.measure.schema import LatencySource, block_times, load_profile
from swiftformer_qnn.profiling.importers import find_importer

runner = CliRunner()

# The head of an onnxruntime-qnn profiling CSV of SwiftFormer-L1 as the facts note gives it
# (onnxruntime-qnn 2.7.0 / QNN 2.51), verbatim.
EP_CSV_HEAD = """Msg Timestamp,Message,Time,Unit of Measurement,Timing Source,Event Level,Event Identifier
0,BACKEND,8600,US,BACKEND,ROOT,Accelerator (load binary) time
0,INIT,11602,US,BACKEND,ROOT,QNN (load binary) time
0,BACKEND,0,COUNT,BACKEND,ROOT,Number of HVX threads used
0,BACKEND,4146,US,BACKEND,ROOT,Time for initial VTCM acquire
0,BACKEND,168981,US,BACKEND,ROOT,Time for HVX + HMX power on and acquire
0,BACKEND,593303323,CYCLES,BACKEND,ROOT,Accelerator (execute) time (cycles)
0,NODE,60632,CYCLES,BACKEND,SUB-EVENT,Input OpId_2 (cycles)
0,NODE,11065106,CYCLES,BACKEND,SUB-EVENT,image_QuantizeLinear:OpId_16 (cycles)
0,NODE,1793681,CYCLES,BACKEND,SUB-EVENT,Transpose_token_692:OpId_18 (cycles)
0,NODE,3637634,CYCLES,BACKEND,SUB-EVENT,/stem/conv1/Conv_token_53:OpId_26 (cycles)
0,NODE,1356442,CYCLES,BACKEND,SUB-EVENT,/stage0/block0_conv_encoder/dwconv/Conv_token_65:OpId_46 (cycles)
"""


def test_the_two_csvs_with_one_header_are_told_apart_by_their_rows(tmp_path):
    ep = tmp_path / "ep.csv"
    ep.write_text(EP_CSV_HEAD)
    viewer = tmp_path / "viewer.csv"
    viewer.write_text(write_csv(GRAPH, device_inferences("encoder", 2)))
    assert find_importer(ep).NAME == "onnxruntime-qnn profiling CSV"
    assert find_importer(EMULATOR_CSV["l1"]).NAME == "onnxruntime-qnn profiling CSV"
    assert find_importer(viewer).NAME == "qnn-profile-viewer CSV"


def _node_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return [r for r in csv.DictReader(f) if r["Message"] == "NODE"]


def _execute_us(path: Path) -> float:
    with path.open(newline="") as f:
        (row,) = [r for r in csv.DictReader(f) if r["Event Identifier"] == "QNN (execute) time"]
    return float(row["Time"])


def test_an_onnxruntime_qnn_csv_from_a_phone_keeps_every_per_op_row(exports, tmp_path):  # noqa: F811
    """What an app with the QNN EP collects on a device (here QNN's own CSV of our L1, away from
    the emulator's marker): every NODE row is an op, attributed to its block; the latency is the
    run's `QNN (execute) time`, labelled as what it is."""
    app_csv = tmp_path / "from-phone" / "profile.csv"
    app_csv.parent.mkdir()
    shutil.copyfile(EMULATOR_CSV["l1"], app_csv)
    out = tmp_path / "out"
    res = runner.invoke(app, ["profile", "import", str(app_csv), "--from", str(exports[("l1", True)]),
                              "--device", "Samsung SM-S918B", "--out", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output + res.stderr
    (saved,) = out.glob("*.profile.json")
    p = load_profile(saved)
    assert p.source is LatencySource.ONNXRUNTIME_QNN and p.target.device == "Samsung SM-S918B"
    assert len(p.ops) == len(_node_rows(app_csv)) > 100
    assert p.latency.median_us == _execute_us(app_csv)
    blocks = block_times(p)
    assert "stage3.block4" in blocks and "stem" in blocks
    assert "qnn-net-run" not in res.stdout and "onnxruntime-qnn, device latency" in res.stdout


def test_an_onnxruntime_qnn_csv_without_device_is_refused_and_with_device_emulator_is_no_latency(
        exports, tmp_path):  # noqa: F811
    app_csv = tmp_path / "profile.csv"
    shutil.copyfile(EMULATOR_CSV["encoder"], app_csv)
    args = ["profile", "import", str(app_csv), "--from", str(exports[("encoder", True)])]
    line = one_error_line(runner.invoke(app, [*args, "--out", str(tmp_path / "a")]), 2)
    assert "does not say where it ran" in line and "--device" in line
    res = runner.invoke(app, [*args, "--device", "emulator", "--out", str(tmp_path / "b")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output + res.stderr
    p = load_profile(next((tmp_path / "b").glob("*.profile.json")))
    assert p.source is LatencySource.EMULATOR and p.latency is None and len(p.ops) == len(_node_rows(app_csv))
    said = " ".join(res.stdout.split())
    assert "device latency" not in said.replace("NOT device latency", "")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    from swiftformer_qnn.pipeline import ExportRequest, Until, run_export

    root = tmp_path_factory.mktemp("profiles-compiled")
    return run_export(ExportRequest(variant="encoder", resolution=16, calibration_count=4, heldout_count=2,
                                    until=Until.COMPILE, output_dir=root / "export")).directory


def test_the_emulators_own_csv_is_never_device_latency_whatever_device_is_named(compiled, tmp_path):
    """`profile emulator` leaves its raw CSV with a note of what made it; importing that
    CSV as a phone's gives an emulator profile (cycles, no latency), not 'device latency'."""
    res = runner.invoke(app, ["profile", "emulator", "--from", str(compiled), "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output + res.stderr
    (raw_csv,) = (tmp_path / "e").glob("*.raw/qnn_profile.csv")
    res = runner.invoke(app, ["profile", "import", str(raw_csv), "--from", str(compiled),
                              "--device", "Samsung Galaxy S23", "--out", str(tmp_path / "i")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output + res.stderr
    p = load_profile(next((tmp_path / "i").glob("*.profile.json")))
    assert p.source is LatencySource.EMULATOR and p.latency is None and p.ops
    assert "NOT device latency" in res.stdout and "median" not in res.stdout.split("\n")[0]


def test_an_import_without_per_op_rows_says_so_and_is_no_per_block_baseline(exports, tmp_path):  # noqa: F811
    basic = [{k: v for k, v in inf.items() if k != "ops"} | {"ops": []} for inf in device_inferences("l1", 3)]
    path = tmp_path / "basic.csv"
    path.write_text(write_csv(GRAPH, basic))
    out = tmp_path / "out"
    res = runner.invoke(app, ["profile", "import", str(path), "--from", str(exports[("l1", True)]),
                              "--device", "Samsung SM-S918B", "--out", str(out)])
    assert res.exit_code == 0, res.output + res.stderr
    (saved,) = out.glob("*.profile.json")
    assert "no per-op rows" in load_profile(saved).provenance.note
    line = one_error_line(runner.invoke(app, ["gate", "accept", "latency", "-c", str(saved),
                                              "-b", str(tmp_path / "base")]), 2)
    assert "no per-op rows" in line and "per-block baseline" in line
    assert not (tmp_path / "base").exists()


def test_a_device_figure_far_above_the_exports_estimate_is_flagged_implausible(compiled, tmp_path):
    """The emulator's CSV away from its marker, imported as a phone's: the export's QNN estimate
    (tens of microseconds for the 16-pixel block) shows hundreds of milliseconds to be no phone's."""
    res = runner.invoke(app, ["profile", "emulator", "--from", str(compiled), "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output + res.stderr
    (raw_csv,) = (tmp_path / "e").glob("*.raw/qnn_profile.csv")
    moved = tmp_path / "elsewhere.csv"
    shutil.copyfile(raw_csv, moved)
    res = runner.invoke(app, ["profile", "import", str(moved), "--from", str(compiled),
                              "--device", "Samsung Galaxy S23", "--out", str(tmp_path / "i")])
    assert res.exit_code == 0, res.output + res.stderr
    p = load_profile(next((tmp_path / "i").glob("*.profile.json")))
    assert p.source is LatencySource.ONNXRUNTIME_QNN
    assert "IMPLAUSIBLE as device latency" in p.provenance.note and "QNN Hextimate" in p.provenance.note


def test_a_plausible_device_figure_is_not_flagged(exports, tmp_path):  # noqa: F811
    """Without an estimate in the export (these stand-in exports have none) nothing is said; with
    one, a figure within its allowance passes (the rule, on the committed L1 estimate)."""
    from swiftformer_qnn.profiling.importers import IMPLAUSIBLE_RATIO, IMPLAUSIBLE_SLACK_US

    assert 2500 < IMPLAUSIBLE_RATIO * 656 + IMPLAUSIBLE_SLACK_US  # an S23's L1 (ms range) vs its 656 us estimate
    path = tmp_path / "p.csv"
    path.write_text(write_csv(GRAPH, device_inferences("l1", 3)))
    res = runner.invoke(app, ["profile", "import", str(path), "--from", str(exports[("l1", True)]),
                              "--device", "Samsung SM-S918B", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output + res.stderr
    assert "IMPLAUSIBLE" not in load_profile(next((tmp_path / "o").glob("*.profile.json"))).provenance.note


# --------------------------------------------------------------------------- 9. AI Hub layers repeated


def test_ai_hub_layers_repeated_in_a_payload_are_counted_once(onnx_models):  # noqa: F811
    """A payload (built by the qai-hub client's own converter) listing the stem's layers twice: the
    stem's share is what it is with each layer once, and the note says how many repeats were dropped."""
    from aihub_standin import build_profile_detail
    from qai_hub.client import _profile_pb_to_python_dict
    from test_aihub import _convert

    from swiftformer_qnn.profiling.aihub_payload import onnx_sources

    qdq = onnx_models["xs"]["qdq"]
    payload = _profile_pb_to_python_dict(build_profile_detail(qdq.read_bytes(), runs=3, seed="rep",
                                                              layer_fields="both"))
    once = _convert(payload, sources=onnx_sources(qdq))
    stem = [op.name for op in once.ops if op.attribution and op.attribution.block == "stem"]
    assert stem
    repeated = dict(payload, execution_detail=payload["execution_detail"]
                    + [d for d in payload["execution_detail"] if d["name"] in stem])
    twice = _convert(repeated, sources=onnx_sources(qdq))
    assert block_times(twice)["stem"].share == pytest.approx(block_times(once)["stem"].share)
    assert len(twice.ops) == len(once.ops)
    assert f"{len(stem)} layers repeated" in twice.provenance.note


# --------------------------------------------------------------------------- 6. --timeout bounds every AI Hub call


def test_timeout_bounds_the_device_lookup_against_a_server_that_never_answers(onnx_models, tmp_path,  # noqa: F811
                                                                               monkeypatch):
    """A server that accepts connections and never answers: the first call (the device lookup)
    gives up after --timeout, not after the client's own minutes of retries."""
    import socket
    import time

    from aihub_standin import make_export_dir

    from swiftformer_qnn.core.errors import HubError
    from swiftformer_qnn.model.variants import get_variant
    from swiftformer_qnn.profiling.aihub import HubOptions, HubSession, HubTarget
    from swiftformer_qnn.profiling.devices import resolve_device
    from swiftformer_qnn.profiling.orchestrate import read_export

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes connections; nobody ever reads or answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    ini = tmp_path / "client.ini"
    ini.write_text(f"[api]\napi_token = sfq-test-token-silent\napi_url = {url}\nweb_url = {url}\nverbose = True\n")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
    m = onnx_models["xs"]
    export = make_export_dir(tmp_path / "xs", qdq=m["qdq"], sim=m["sim"], variant="xs", precision="w8a8",
                             input_shape=list(get_variant("xs").input_shape(m["res"])))
    source = read_export(export)
    started = time.monotonic()
    try:
        with pytest.raises(HubError, match=r"looking up the device .*no answer .* within --timeout 2 s") as err:
            HubSession(tmp_path / "run", HubOptions(runs=5, poll_s=0.01, timeout_s=2.0)).run(
                [HubTarget(source.model_path, source.model_info, None)], resolve_device("Samsung Galaxy S23"))
    finally:
        silent.close()
    assert time.monotonic() - started < 30
    # No job was submitted, so no journal was written: the hint must not send the user to one.
    assert "rerun the same command" in err.value.one_line() and "jobs saved in" not in err.value.one_line()


@pytest.mark.parametrize("reason, said", [("read", "No answer in time from"), ("connect", "Could not connect to")])
def test_a_read_timeout_is_not_called_could_not_connect(reason, said):
    """What the qai-hub client raises (its own mapping of requests' errors) when its retries end
    on read timeouts, against one that ends on a refused connection."""
    import qai_hub
    import requests
    from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError

    from swiftformer_qnn.profiling.aihub_client import client_message

    url = "https://app.aihub.qualcomm.com/api/v1/devices/"
    cause = (ReadTimeoutError(None, url, "Read timed out. (read timeout=60)") if reason == "read"
             else NewConnectionError(None, "Connection refused"))
    try:
        qai_hub.client.Client._handle_api_exception(
            None, requests.exceptions.ConnectionError(MaxRetryError(None, url, cause)), "https://app.aihub.qualcomm.com")
    except Exception as exc:  # noqa: BLE001  (the client's InternalError)
        message = client_message(exc)
    assert said in message and ("Could not connect" not in message) is (reason == "read")
