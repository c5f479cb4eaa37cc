"""`export --io uint8-nhwc`: the binary takes and gives its quantized tensors, channel-last, and
still computes the model (the same integers as the float-I/O graph; verify passes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from swiftformer_qnn.core.errors import UsageError
from swiftformer_qnn.htp.record import read_compile_record
from swiftformer_qnn.measure.agreement import run_cpu
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
from swiftformer_qnn.pipeline.native_io import native_io

SMALL = dict(calibration_count=8, heldout_count=4)


@pytest.fixture(scope="module")
def block_native(tmp_path_factory):
    """The standalone encoder block (16x16 map) exported with native I/O, verified on the emulator."""
    out = tmp_path_factory.mktemp("native-io")
    return run_export(ExportRequest(variant="encoder", resolution=16, io="uint8-nhwc", output_dir=out / "x", **SMALL))


def test_native_io_graph_gives_the_same_integers_as_the_float_io_graph(block_native, tmp_path):
    qdq = block_native.artifact("quantize", "model.qdq.onnx")
    model = onnx.load(str(qdq))
    spec = native_io(model)
    onnx.save(model, str(tmp_path / "native.onnx"))
    (inp,) = [t for t in spec if t.role == "input"]
    (out,) = [t for t in spec if t.role == "output"]
    assert inp.shape == [1, 16, 16, 96] and out.shape == [1, 16, 16, 96] and inp.nhwc and out.nhwc
    x = np.load(block_native.directory / "heldout.npy")[:2]
    # The float-I/O graph quantizes x with the same scale and zero point as from_float.
    reference = run_cpu(qdq, inp.to_float(inp.from_float(x)))
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "native.onnx"), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {inp.name: inp.from_float(x[i : i + 1])})[0] for i in range(len(x))])
    assert got.dtype == np.uint8 and got.shape == (2, 16, 16, 96)
    np.testing.assert_array_equal(out.to_float(got), reference)


def test_native_io_export_compiles_without_boundary_ops_and_verifies(block_native):
    record = read_compile_record(block_native.directory / "compile.json")
    assert [(t.role, t.dtype, t.nhwc) for t in record.io] == [("input", "uint8", True), ("output", "uint8", True)]
    # The float-I/O block compiles with a Quantize, a Dequantize and layout ops at its edges.
    assert not {"Quantize", "Dequantize", "Transpose"} & set(record.htp_op_types)
    assert record.graph_cost.layout_ops == 0
    assert record.graph_optimization_mode == 3
    verify = block_native.manifest.stage("verify").results
    assert verify.emulator_vs_fp32.sqnr_db > 15
    assert block_native.manifest.request.io == "uint8-nhwc"


@pytest.mark.parametrize(("io", "precision", "match"), [("uint8", "w8a8", "Unknown --io"),
                                                        ("uint8-nhwc", "w8a16", "needs --precision w8a8")])
def test_bad_io_is_a_usage_error(io, precision, match, tmp_path):
    with pytest.raises(UsageError, match=match):
        run_export(ExportRequest(variant="encoder", io=io, precision=precision, until=Until.ONNX,
                                 output_dir=tmp_path / "x"))


# --- every run of a native-I/O export feeds it uint8 NHWC ------------------------------------------


def _input_spec(export):
    (feed,) = [t for t in read_compile_record(export.directory / "compile.json").io if t.role == "input"]
    return feed


def _sample(export) -> np.ndarray:
    return np.load(export.directory / "sample_input.npy")


def test_profile_emulator_runs_a_native_export_on_its_uint8_nhwc_input(block_native, tmp_path):
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app
    from swiftformer_qnn.measure.schema import load_profile

    result = CliRunner().invoke(app, ["profile", "emulator", "--from", str(block_native.directory),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output  # fed float, the uint8 binary refuses the run
    (path,) = (tmp_path / "out").glob("*.profile.json")
    assert path.name.startswith("encoder-d96x16-w8a8-uint8-nhwc-")
    note = load_profile(path).provenance.note
    assert "the export's own context binary" in note and "native uint8 NHWC input 1x16x16x96" in note


def test_profile_estimate_estimates_the_native_graph_the_export_compiled(block_native, tmp_path):
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app
    from swiftformer_qnn.measure.schema import load_profile

    result = CliRunner().invoke(app, ["profile", "estimate", "--from", str(block_native.directory),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "out").glob("*.profile.json")
    types = {op.op_type for op in load_profile(path).ops}
    # The float-I/O graph's boundary: a Quantize and a Transpose in, a Dequantize and a Transpose out.
    assert not {"Quantize", "Dequantize", "Transpose"} & types, types


def test_diagnose_feeds_the_tapped_graph_the_uint8_nhwc_input(block_native, tmp_path, monkeypatch):
    """What reached onnxruntime: the CPU and HTP runs of the tapped graph take the binary's uint8
    NHWC input; only the fp32 reference graph takes the float NCHW sample. The CPU runs are in
    this process; the HTP run in the compile worker, given its feed by `compile_in_worker`."""
    import numpy as np
    import onnxruntime as ort
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app
    from swiftformer_qnn.htp import compile as htp_compile

    fed, emulated = [], []
    run = ort.InferenceSession.run
    compile_in_worker = htp_compile.compile_in_worker

    def spy(self, names, feeds, *args, **kw):
        fed.extend((v.dtype.name, v.shape) for v in feeds.values())
        return run(self, names, feeds, *args, **kw)

    def spy_worker(spec, *, run_on=None):
        with np.load(run_on) as feeds:
            emulated.extend((feeds[k].dtype.name, feeds[k].shape) for k in feeds.files)
        return compile_in_worker(spec, run_on=run_on)

    monkeypatch.setattr(ort.InferenceSession, "run", spy)
    monkeypatch.setattr(htp_compile, "compile_in_worker", spy_worker)
    result = CliRunner().invoke(app, ["diagnose", str(block_native.directory), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert sorted(fed) == [("float32", (1, 96, 16, 16)), ("uint8", (1, 16, 16, 96))]
    assert emulated == [("uint8", (1, 16, 16, 96))]


def test_profile_phone_pushes_the_uint8_nhwc_input_and_says_it_is_native(block_native, tmp_path, monkeypatch):
    """`profile phone` against the adb / qnn-net-run stand-ins: the input file on the phone is the
    sample quantized with the recorded scale, NHWC, one byte a value, read with --use_native_input_files."""
    import json

    from adb_standin import StandIn, make_sdk
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app

    trace = json.loads((block_native.directory / "qnn_op_trace.json").read_text())
    names = [m["dst_name"] for g in trace["subgraph_traces"] for m in g["op_mappings"]]
    world = StandIn(tmp_path / "standin")
    world.set_run(ops=[[f"{n}:OpId_{40 + 2 * k} (cycles)", 3000.0 + k] for k, n in enumerate(names)],
                  latency_us=900.0, graph="QNNExecutionProvider_1_0")
    for k, v in world.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("QNN_SDK_ROOT", str(make_sdk(tmp_path / "qairt" / "2.51.0.260929")))
    world.add_phone("R5CW40NATIVE")
    result = CliRunner().invoke(app, ["profile", "phone", "--from", str(block_native.directory), "--runs", "3",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    runs = world.commands("qnn-net-run")
    assert len(runs) == 2 and all("--use_native_input_files" in r["argv"] for r in runs)
    received = world.commands("qnn-net-run input")
    expected = _input_spec(block_native).from_float(_sample(block_native))
    assert expected.shape == (1, 16, 16, 96)
    for r in received:
        assert Path(r["kept"]).read_bytes() == np.ascontiguousarray(expected).tobytes()


def test_profile_on_ai_hub_uploads_the_native_graph_and_feeds_it_uint8_nhwc(block_native, tmp_path, monkeypatch):
    """Against the AI Hub stand-in (the real qai_hub client over HTTP): the model compiled is the
    export's native-I/O graph, and the output check's inputs are uint8 NHWC; its outputs,
    dequantized, agree with the float-I/O QDQ graph on the CPU."""
    import io
    import secrets

    import h5py
    from aihub_standin import HubStandIn
    from qai_hub.util.dataset_entries_converters import h5_to_dataset_entries
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app
    from swiftformer_qnn.measure.schema import load_profile

    token = f"sfq-test-token-{secrets.token_hex(12)}"
    hub = HubStandIn(token).start()
    try:
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(hub.write_client_ini(tmp_path / "hubconf" / "client.ini")))
        monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
        import swiftformer_qnn.measure.agreement as agreement

        ran = []  # the export holds validate's and cpu_qdq's outputs on these inputs: nothing runs again
        monkeypatch.setattr(agreement, "run_cpu", lambda model, inputs: ran.append(model))
        result = CliRunner().invoke(app, ["profile", "--from", str(block_native.directory), "--check-outputs",
                                          "--runs", "5", "--poll", "0.01", "--out", str(tmp_path / "out")])
        assert result.exit_code == 0, result.output
        assert ran == []
        uploaded = [onnx.load_from_string(m.data) for m in hub.models.values()
                    if m.data and not m.data.startswith(b"QNN-")]
        assert len(uploaded) == 1
        (inp,) = uploaded[0].graph.input
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
        assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 16, 16, 96]
        sent = []
        for ds in hub.datasets.values():
            if ds.pb.name.endswith(" outputs"):  # what the stand-in's device gave back
                continue
            with h5py.File(io.BytesIO(ds.data), "r") as h5f:
                sent += [a for arrays in h5_to_dataset_entries(h5f).values() for a in arrays]
        heldout = np.load(block_native.directory / "heldout.npy")
        feeds = [a for a in sent if a.shape == (1, 16, 16, 96)]
        assert len(feeds) == len(heldout) and all(a.dtype == np.uint8 for a in feeds)
        np.testing.assert_array_equal(feeds[0], _input_spec(block_native).from_float(heldout[:1]))
        (path,) = (tmp_path / "out").glob("*.profile.json")
        check = load_profile(path).output_check
        assert check.vs_cpu_qdq.exact or check.vs_cpu_qdq.sqnr_db > 30
    finally:
        hub.stop()
