"""`swiftformer-qnn profile phone [--serial SERIAL]` against stand-ins at the process boundary:
`adb` (first on PATH) keeping a phone's file system in a directory, the phone's `qnn-net-run`
and the SDK's `qnn-profile-viewer` (`tests/adb_standin.py`). Assertions are on the command
lines the stand-ins recorded and on what is left on the phone, never inside our code.

The export is real: a QDQ SwiftFormerEncoder compiled by the bundled QNN into a context
binary, whose op trace names the HTP ops the stand-in phone reports cycles for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from adb_standin import S23_ULTRA, StandIn, make_sdk
from aihub_standin import make_export_dir, real_qdq_model
from qnn_viewer_formats import inferences_of
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.core.atomic import sha256_file
from swiftformer_qnn.core.cache import FileRecord, StageRecord
from swiftformer_qnn.measure.attribution import unattributed_share
from swiftformer_qnn.measure.schema import LatencySource, TimeBasis, block_times, load_profile
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.pipeline.artifacts import MANIFEST_NAME, read_manifest

SERIAL = "R5CW40ABCDE"
RUNS = 7
LABEL = "encoder-d96x32-w8a8"
STEM = f"{LABEL}-qnn2.51.0-samsung-sm-s918b"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def phone_export(tmp_path_factory) -> Path:
    """A real export of the encoder block, compiled to a QNN context binary for SM8550."""
    from swiftformer_qnn.htp.record import CompiledModel, CompileRecord
    from swiftformer_qnn.htp.session import HtpTarget
    from swiftformer_qnn.pipeline.compile import COMPILE_OUTPUTS, GUARD_OUTPUTS, guard_and_compile

    d = tmp_path_factory.mktemp("phone-export")
    m = real_qdq_model("encoder", 32, d)
    out = make_export_dir(d / "encoder", qdq=m["qdq"], sim=m["sim"], variant="encoder", precision="w8a8",
                          input_shape=list(get_variant("encoder").input_shape(32)))
    (out / "compile").mkdir()
    results = guard_and_compile(out / "model.qdq.onnx", out / "compile", HtpTarget(), soc="sm8550",
                                subject=CompiledModel(variant="encoder", precision="w8a8",
                                                      input_shape=list(get_variant("encoder").input_shape(32))))
    manifest = read_manifest(out)
    outputs = {n: FileRecord(path=f"compile/{n}", sha256=sha256_file(out / "compile" / n),
                             bytes=(out / "compile" / n).stat().st_size) for n in GUARD_OUTPUTS + COMPILE_OUTPUTS}
    manifest.stages.append(StageRecord[CompileRecord](name="compile", key="compile-handmade", wall_s=0.0, outputs=outputs,
                                       results=results))
    (out / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2))
    return out


def device_ops(export: Path) -> list[list]:
    """What the phone reports per op: QNN's `<op>:OpId_N (cycles)` for every op of the
    compiled graph (names from its op trace), graph I/O ops first and last."""
    trace = json.loads((export / "compile" / "qnn_op_trace.json").read_text())
    names = [m["dst_name"] for g in trace["subgraph_traces"] for m in g["op_mappings"]]
    ops = [["Input OpId_2 (cycles)", 2100.0]]
    ops += [[f"{n}:OpId_{40 + 2 * k} (cycles)", float(3000 + (k * 7919) % 41000)] for k, n in enumerate(names)]
    return ops + [["Output OpId_3 (cycles)", 1800.0]]


@pytest.fixture
def world(tmp_path, monkeypatch, phone_export) -> StandIn:
    standin = StandIn(tmp_path / "standin")
    standin.set_run(ops=device_ops(phone_export), latency_us=1850.0, graph="QNNExecutionProvider_1_0")
    for k, v in standin.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ANDROID_HOME", raising=False)
    monkeypatch.delenv("ANDROID_SDK_ROOT", raising=False)
    monkeypatch.delenv("QAIRT_SDK_ROOT", raising=False)
    monkeypatch.setenv("QNN_SDK_ROOT", str(make_sdk(tmp_path / "qairt" / "2.51.0.260929")))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return standin


def invoke(*args: str):
    return CliRunner().invoke(app, ["profile", "phone", *args])


def test_profile_on_a_phone(world, phone_export, tmp_path):
    world.add_phone(SERIAL)
    out = tmp_path / "out"
    result = invoke("--from", str(phone_export), "--runs", str(RUNS), "--out", str(out))
    assert result.exit_code == 0, result.output

    p = load_profile(out / f"{STEM}.profile.json")
    assert p.source is LatencySource.QNN_NET_RUN
    assert (p.target.device, p.target.soc_model, p.target.htp_arch, p.target.os) == ("Samsung SM-S918B", 43, 73, "Android 14")
    assert (p.toolchain.qnn_version, p.toolchain.ran_with) == ("2.51.0", "2.51.0.260929")
    assert p.toolchain.compiled_with.startswith("v2.51.0.")  # the export's ep_sdk_version
    # Latency from the basic-level run (the detailed run's inflated times are not used).
    basic = inferences_of([], RUNS, latency_us=1850.0)
    assert p.latency.runs_us == [float(i["qnn_execute_us"]) for i in basic]
    ops = device_ops(phone_export)
    assert len(p.ops) == len(ops)
    assert all(op.execution_cycles is not None for op in p.ops)
    blocks = block_times(p)
    assert set(blocks) == {"encoder"} and blocks["encoder"].basis is TimeBasis.DERIVED_FROM_CYCLES
    assert blocks["encoder"].time == pytest.approx(p.latency.median_us)
    assert set(blocks["encoder"].parts) == {"local_representation", "attention", "mlp"}
    assert unattributed_share(p) == 0.0
    raw = out / f"{STEM}.raw"
    for level in ("basic", "detailed"):
        assert (raw / level / "qnn-profiling-data_0.log").is_file()
        assert (raw / level / "qnn-profiling-data_0.json").is_file()
        assert "Finished Executing Graphs" in (raw / f"qnn-net-run-{level}.txt").read_text()
    assert not list(out.glob(".*partial"))

    # The real command lines, as the stand-ins received them.
    devices, *adb = world.commands("adb")
    assert devices["argv"] == ["devices"]
    assert all(c["argv"][:2] == ["-s", SERIAL] for c in adb)
    props = [c["argv"][3] for c in adb if c["argv"][2:3] == ["shell"] and c["argv"][3].startswith("getprop")]
    assert "getprop ro.soc.model" in props and "getprop ro.product.model" in props
    pushed = {Path(c["argv"][3]).name: c["argv"][4] for c in adb if c["argv"][2] == "push"}
    run_dir = pushed["qnn-net-run"].rsplit("/", 1)[0]
    assert run_dir.startswith("/data/local/tmp/swiftformer-qnn/")
    assert {"libQnnHtp.so", "libQnnSystem.so", "libQnnHtpV73Stub.so", "libQnnHtpV73Skel.so", "model.ctx_qnn.bin"} <= set(pushed)
    assert "libQnnHtpPrepare.so" not in pushed
    skel_src = next(c["argv"][3] for c in adb if c["argv"][2] == "push" and c["argv"][3].endswith("Skel.so"))
    assert skel_src.endswith("lib/hexagon-v73/unsigned/libQnnHtpV73Skel.so")
    assert pushed["model.ctx_qnn.bin"] == f"{run_dir}/{LABEL}/model.bin"

    runs = world.commands("qnn-net-run")
    assert [r["argv"] for r in runs] == [
        ["--backend", f"{run_dir}/libQnnHtp.so", "--retrieve_context", f"{run_dir}/{LABEL}/model.bin",
         "--input_list", f"{run_dir}/{LABEL}/input_list.txt", "--output_dir", f"{run_dir}/{LABEL}/out_{level}",
         "--perf_profile", "burst", "--profiling_level", level, "--num_inferences", str(RUNS),
         "--keep_num_outputs", "1"]
        for level in ("basic", "detailed")
    ]
    for r in runs:
        assert r["env"]["ADSP_LIBRARY_PATH"] == f"{run_dir};/vendor/dsp/cdsp;/vendor/lib/rfsa/adsp;/system/lib/rfsa/adsp;/dsp"
        assert r["env"]["LD_LIBRARY_PATH"].split(":")[0] == run_dir
    viewer = world.commands("qnn-profile-viewer")
    assert len(viewer) == 2
    for v in viewer:
        assert v["argv"][2:] == ["--reader", str(Path(os.environ["QNN_SDK_ROOT"]) / "lib/x86_64-linux-clang/libQnnJsonProfilingReader.so"),
                                 "--standardized_json_output", "--output", v["argv"][1].replace(".log", ".json")]
    # The last thing on the phone: the run's directory removed. Nothing is left.
    assert adb[-1]["argv"][2:4] == ["shell", f"rm -rf {run_dir}; rmdir /data/local/tmp/swiftformer-qnn 2>/dev/null; true"]
    assert world.files_on(SERIAL) == []
    assert "Per block" in result.stdout and "phone over adb" in result.stdout


def test_an_sdk_without_the_json_reader_converts_through_csv(world, phone_export, tmp_path):
    # Two phones; the serial picks one. This one, like phones before Android 12, has no
    # ro.soc.model: its board platform (kalama = SM8550) tells the SoC.
    world.add_phone("OTHER123")
    world.add_phone(SERIAL, props={**S23_ULTRA, "ro.soc.model": ""})
    os.environ["QNN_SDK_ROOT"] = str(make_sdk(tmp_path / "qairt-nojson", json_reader=False))
    out = tmp_path / "out"
    result = invoke("--serial", SERIAL, "--from", str(phone_export), "--runs", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    viewer = world.commands("qnn-profile-viewer")
    assert [v["argv"][2:] for v in viewer] == [["--output", v["argv"][1].replace(".log", ".csv")] for v in viewer]
    p = load_profile(out / f"{STEM}.profile.json")
    assert p.latency.run_count == 3 and len(p.ops) == len(device_ops(phone_export))
    assert (p.target.soc_model, p.target.htp_arch) == (43, 73)
    assert all(c["argv"][:2] == ["-s", SERIAL] for c in world.commands("adb")[1:])
    assert world.files_on(SERIAL) == [] and world.files_on("OTHER123") == []


def _phones(world: StandIn, *specs) -> None:
    for serial, state, soc in specs:
        props = {"ro.product.manufacturer": "samsung", "ro.product.model": "SM-X", "ro.soc.model": soc,
                 "ro.board.platform": "", "ro.build.version.release": "14"}
        world.add_phone(serial, state, props)


@pytest.mark.parametrize("setup, args, message", [
    (lambda w, t: os.environ.__setitem__("PATH", str(t)), (), "adb was not found"),
    (lambda w, t: None, (), "No phone is attached"),
    (lambda w, t: _phones(w, ("AAA", "device", "SM8550"), ("BBB", "device", "SM8550")), (),
     "2 phones are attached: AAA (device), BBB (device). Pick one with --serial"),
    (lambda w, t: _phones(w, ("AAA", "device", "SM8550")), ("--serial", "ZZZ"), "No phone with serial ZZZ"),
    (lambda w, t: _phones(w, ("AAA", "unauthorized", "SM8550")), (), "has not authorized this computer"),
    (lambda w, t: _phones(w, ("AAA", "device", "SM8650")), (), "compiled for HTP v73, phone AAA is a Snapdragon 8 Gen 3"),
    (lambda w, t: (_phones(w, ("AAA", "device", "SM8550")),
                   os.environ.__setitem__("QNN_SDK_ROOT", str(make_sdk(t / "sdk", android=False)))), (),
     "lacks bin/aarch64-android/qnn-net-run (Android files for sm8550, HTP v73)"),
    (lambda w, t: (_phones(w, ("AAA", "device", "SM8550")),
                   os.environ.__setitem__("QNN_SDK_ROOT", str(make_sdk(t / "sdk", archs=(75,))))), (),
     "lacks lib/aarch64-android/libQnnHtpV73Stub.so"),
    (lambda w, t: (_phones(w, ("AAA", "device", "SM8550")),
                   os.environ.__setitem__("QNN_SDK_ROOT", str(make_sdk(t / "sdk", version="2.47.0.260601")))), (),
     "was compiled with QNN 2.51.0, the SDK at"),
    (lambda w, t: (_phones(w, ("AAA", "device", "SM8550")), os.environ.pop("QNN_SDK_ROOT")), (), "No QNN SDK given"),
])
def test_what_stops_a_phone_run_is_one_line_exit_2_and_nothing_on_the_phone(world, phone_export, tmp_path, setup, args, message):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    setup(world, empty if "adb was not found" in message else tmp_path)
    out = tmp_path / "out"
    result = invoke(*(args or ()), "--from", str(phone_export), "--out", str(out))
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in result.output
    for phone in world.config["phones"]:
        assert world.files_on(phone["serial"]) == []
    assert not out.exists() or not any(out.iterdir())
    assert world.commands("qnn-net-run") == []
    if "version" in message or "QNN SDK given" in message:
        assert world.commands("adb") == []  # the SDK is checked before the phone is touched


def test_a_run_that_fails_on_the_phone_shows_its_last_lines_exit_1(world, phone_export, tmp_path):
    world.add_phone(SERIAL)
    world.set_run(mode="fail")
    out = tmp_path / "out"
    result = invoke("--from", str(phone_export), "--out", str(out))
    assert result.exit_code == 1, result.output
    *progress, err = result.stderr.strip().splitlines()  # progress lines, then the one error line
    assert err.startswith("error:") and not any(p.startswith("error:") for p in progress)
    assert "qnn-net-run failed on phone R5CW40ABCDE (exit 1) at basic level" in err
    assert "Graph execution failed: 1002" in err and "Failed to execute graph" in err
    assert world.files_on(SERIAL) == []
    assert not out.exists() or list(out.iterdir()) == []


def test_ctrl_c_during_the_run_leaves_nothing_on_the_phone(world, phone_export, tmp_path):
    world.add_phone(SERIAL)
    world.set_run(mode="hang")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "swiftformer_qnn.cli", "profile", "phone",
                             "--from", str(phone_export), "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = world.home / "started"
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists(), proc.communicate(timeout=30)
    assert world.files_on(SERIAL) != []  # mid-run: the phone holds the run directory
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert world.files_on(SERIAL) == [], stderr.decode()
    assert any(c["program"] == "adb-ended" for c in world.commands()), (world.commands(), stderr.decode())  # the shell on the phone was ended
    assert world.commands("adb")[-1]["argv"][2:3] == ["shell"] and "rm -rf" in world.commands("adb")[-1]["argv"][3]
    assert not out.exists() or list(out.iterdir()) == []
