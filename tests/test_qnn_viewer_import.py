"""Importers of qnn-profile-viewer output: text summary, CSV (with and without the timestamp
column) and standardized JSON, on samples in the formats QAIRT's tool writes
(`tests/qnn_viewer_formats.py`, after QAIRT's public samples) carrying the HTP op
names QNN built from our L1 and encoder exports (the committed emulator run's own CSV)."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
from qnn_viewer_formats import (
    OP_TRACE,
    device_inferences,
    exported_ops,
    strip_op_id,
    write_csv,
    write_json,
    write_text,
)

from swiftformer_qnn.core.errors import ProfileError
from swiftformer_qnn.measure.attribution import model_blocks, unattributed_share
from swiftformer_qnn.measure.schema import LatencyBasis, LatencySource, ModelInfo, TimeBasis, block_times
from swiftformer_qnn.profiling.importers import ImportContext, find_importer
from swiftformer_qnn.profiling.importers import load as load_profile_file
from swiftformer_qnn.profiling.qnn_viewer import (
    parse_viewer_csv,
    parse_viewer_json_text,
    parse_viewer_text,
    split_op_identifier,
)

GRAPH = "QNNExecutionProvider_QNNExecutionProvider_5317919554919925930_1_0"
SHAPES = {"l1": [1, 3, 224, 224], "encoder": [1, 96, 64, 64]}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[tuple[str, bool], Path]:
    """Export directories of L1 and the encoder as `profile import --from` reads them, whose
    compile stage holds QNN's op trace of our real exports (the committed emulator run's).
    Their model file is a one-node placeholder: these ops are placed through the op trace."""
    import hashlib

    import onnx
    from aihub_standin import make_export_dir
    from onnx import TensorProto, helper

    from swiftformer_qnn.core.atomic import sha256_file
    from swiftformer_qnn.core.cache import FileRecord, StageRecord
    from swiftformer_qnn.htp.record import CompileRecord, traced_figures
    from swiftformer_qnn.pipeline.artifacts import MANIFEST_NAME, read_manifest

    root = tmp_path_factory.mktemp("import-exports")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="placeholder")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    placeholder = root / "placeholder.onnx"
    onnx.save(helper.make_model(graph), placeholder)
    out = {}
    for variant in SHAPES:
        for trace in (True, False):
            d = make_export_dir(root / f"{variant}-{trace}", qdq=placeholder, sim=placeholder, variant=variant,
                                precision="w8a8", input_shape=SHAPES[variant])
            if trace:
                (d / "compile").mkdir()
                shutil.copyfile(OP_TRACE[variant], d / "compile" / "qnn_op_trace.json")
                m = read_manifest(d)
                f = d / "compile" / "qnn_op_trace.json"
                # The record of the compile that wrote the committed trace (QNN 2.51.0, onnxruntime-qnn
                # 2.7.0); its context binary is not kept here, so it records none.
                record = CompileRecord(
                    qnn_version="2.51.0", ep_sdk_version=None, onnxruntime="1.31.1", onnxruntime_qnn="2.7.0",
                    soc="sm8550", soc_model=43, htp_arch=73, fp16=False, model_sha256=sha256_file(placeholder),
                    compile_s=0.0, context_binary_bytes=0, context_binary_sha256=hashlib.sha256(b"").hexdigest(),
                    **traced_figures(f))
                m.stages.append(StageRecord[CompileRecord](name="compile", key="compile-handmade", wall_s=0.0, results=record,
                                            outputs={"qnn_op_trace.json": FileRecord(
                                                path="compile/qnn_op_trace.json", sha256=sha256_file(f),
                                                bytes=f.stat().st_size)}))
                (d / MANIFEST_NAME).write_text(m.model_dump_json(indent=2))
            out[(variant, trace)] = d
    return out


@pytest.fixture
def context(exports):
    def make(variant: str, *, trace: bool = True) -> ImportContext:
        d = exports[(variant, trace)]
        return ImportContext(
            export_dir=d,
            model=ModelInfo(variant=variant, input_shape=SHAPES[variant], precision="w8a8"),
            model_path=d / "model.qdq.onnx",
            label=f"{variant}-w8a8",
            device="Samsung Galaxy S23 Ultra",
        )

    return make


def import_file(path, ctx):
    return load_profile_file(path, ctx)[1]


def write(tmp_path, fmt: str, variant: str, inferences: list[dict], **kw):
    path = tmp_path / {"text": "summary.txt", "csv": "profile.csv", "json": "profile.json"}[fmt]
    if fmt == "text":
        path.write_text(write_text(GRAPH, inferences))
    elif fmt == "csv":
        path.write_text(write_csv(GRAPH, inferences, **kw))
    else:
        path.write_text(write_json(inferences))
    return path


@pytest.mark.parametrize("identifier, name, op_id", [
    ("/stem/conv1/Conv_token_13:OpId_1263 (cycles)", "/stem/conv1/Conv_token_13", 1263),
    ("_Transpose_3:OpId_119 (cycles)", "_Transpose_3", 119),
    ("fc:OpId_17", "fc", 17),
    ("Input OpId_2 (cycles)", "Input", 2),
    ("Output OpId_3 (cycles)", "Output", 3),
])
def test_op_identifiers_lose_qnn_decorations(identifier, name, op_id):
    assert split_op_identifier(identifier) == (name, op_id)


@pytest.mark.parametrize("fmt, kw", [("csv", {"timestamps": True}), ("csv", {"timestamps": False}), ("json", {})])
@pytest.mark.parametrize("variant", ["l1", "encoder"])
def test_per_inference_formats_give_runs_median_cycles_and_blocks(context, tmp_path, fmt, kw, variant):
    infs = device_inferences(variant, 5)
    path = write(tmp_path, fmt, variant, infs, **kw)
    profile = import_file(path, context(variant))

    assert profile.source is LatencySource.QNN_NET_RUN
    # The version the viewer's output states (CSV header line, JSON metadata).
    assert profile.toolchain.qnn_version == {"csv": "2.47.0", "json": "2.49.0"}[fmt]
    lat = profile.latency
    assert lat.basis is LatencyBasis.RUNS and lat.run_count == 5
    assert lat.runs_us == [float(i["qnn_execute_us"]) for i in infs]
    assert lat.median_us == statistics.median(i["qnn_execute_us"] for i in infs)
    assert lat.min_us == min(i["qnn_execute_us"] for i in infs)

    # Every HTP op, named without QNN's decoration, with the median of its 5 per-inference cycles.
    ops = exported_ops(variant)
    assert [op.name for op in profile.ops] == [
        "Input" if i.startswith("Input OpId") else "Output" if i.startswith("Output OpId") else strip_op_id(i)
        for i, _ in ops
    ]
    for k, op in enumerate(profile.ops):
        assert op.execution_cycles == statistics.median(inf["ops"][k][1] for inf in infs)
        assert op.execution_time_us is None

    # Blocks: device time = share of cycles x median latency, they sum to the latency.
    blocks = block_times(profile)
    assert {b.basis for b in blocks.values()} == {TimeBasis.DERIVED_FROM_CYCLES}
    assert sum(b.time for b in blocks.values()) == pytest.approx(lat.median_us)
    assert set(blocks) <= set(model_blocks(variant)) | {"other"}
    assert unattributed_share(profile) < 0.05
    if variant == "l1":
        assert len(set(blocks) - {"other"}) == len(model_blocks("l1"))  # every block has ops


def test_text_summary_gives_average_latency_and_leaves_its_op_lines_unread(context, tmp_path):
    # The stand-in writes per-op lines into the text summary; no public sample shows their layout,
    # so the importer must not read them (per-op cycles come from the CSV or the JSON).
    infs = device_inferences("l1", 4)
    path = write(tmp_path, "text", "l1", infs)
    profile = import_file(path, context("l1"))

    avg = round(statistics.fmean(i["qnn_execute_us"] for i in infs))
    assert profile.latency.basis is LatencyBasis.VIEWER_AVERAGE
    assert profile.latency.median_us == avg and profile.latency.runs_us == []
    assert "run count not stated" in profile.latency.label()
    lo, hi = min(i["qnn_execute_us"] for i in infs), max(i["qnn_execute_us"] for i in infs)
    assert f"Min {lo:g} us, Max {hi:g} us" in profile.provenance.note
    assert profile.ops == []
    assert f"{len(exported_ops('l1'))} per-op lines of the text summary not read" in profile.provenance.note
    assert "import the CSV or the JSON" in profile.provenance.note


def test_basic_level_files_have_latency_and_no_ops(context, tmp_path):
    infs = [dict(i, ops=[]) for i in device_inferences("encoder", 3)]
    for fmt in ("text", "csv", "json"):
        profile = import_file(write(tmp_path, fmt, "encoder", infs), context("encoder"))
        assert profile.ops == [] and profile.latency.median_us > 0


def test_attribution_without_the_op_trace_still_names_most_blocks(context, tmp_path):
    # Without the compile stage's op trace, renamed layout ops (Transpose_token_N) go to `other`.
    infs = device_inferences("l1", 2)
    profile = import_file(write(tmp_path, "csv", "l1", infs), context("l1", trace=False))
    assert 0 < unattributed_share(profile) < 0.5
    assert "stage3.block2" in block_times(profile)


def test_csv_groups_one_execute_group_per_inference_and_reads_the_version_line(tmp_path):
    infs = device_inferences("encoder", 3)
    text = write_csv(GRAPH, infs, version="v2.47.0.260601")
    report = parse_viewer_csv(text)
    assert len(report.executions) == 3 and report.graph == GRAPH
    assert report.qnn_version == "2.47.0.260601"
    assert [len(e.ops) for e in report.executions] == [len(exported_ops("encoder"))] * 3
    assert [e.accelerator_cycles for e in report.executions] == [i["cycles"] for i in infs]


def test_the_facts_note_csv_sample_verbatim():
    sample = (
        "Msg Timestamp, Message, Time, Unit of Measurement, Timing Source, Event Level, Event Identifier\n"
        "EXECUTE,3301,US,NETRUN,ROOT,Graph 0: tiny_block_decode\n"
        "EXECUTE,1851,US,BACKEND,ROOT,QNN accelerator (execute) time\n"
        "EXECUTE,149241,CYCLES,BACKEND,ROOT,Accelerator (execute) time (cycles)\n"
        "EXECUTE,3278,US,BACKEND,ROOT,QNN (execute) time\n"
        "EXECUTE,13807,CYCLES,BACKEND,SUB-EVENT,_Transpose_3:OpId_119 (cycles)\n"
        "EXECUTE,7492,CYCLES,BACKEND,SUB-EVENT,_MatMul_3:OpId_120 (cycles)\n"
    )
    report = parse_viewer_csv(sample)
    (run,) = report.executions
    assert report.graph == "tiny_block_decode"
    assert run.times_us == {"NetRun": 3301, "QNN accelerator (execute) time": 1851, "QNN (execute) time": 3278}
    assert run.accelerator_cycles == 149241
    assert [(o.name, o.cycles) for o in run.ops] == [("_Transpose_3", 13807), ("_MatMul_3", 7492)]


def test_the_facts_note_json_sample_verbatim():
    # QAIRT's public standardized-JSON sample (QAIRT 2.49, SM8750), its "..." elisions left out.
    sample = (
        '{"metadata": {"appName": "qnn-net-run", "appVersion": "..."},\n'
        ' "messages": [{"method": "BACKEND_EXECUTE", "profilingEvents": [\n'
        '   {"identifier": "Accelerator (execute) time (cycles)", "unit": "CYCLES", "type": "", "value": 29239,\n'
        '    "sub-events": [{"identifier": "fc:OpId_17", "unit": "CYCLES", "type": "NODE", "value": 6137}]}]}]}'
    )
    (run,) = parse_viewer_json_text(sample).executions
    assert run.accelerator_cycles == 29239
    assert [(o.name, o.cycles) for o in run.ops] == [("fc", 6137)]


def test_the_facts_note_text_sample_verbatim():
    sample = """Qnn Init/Prepare/Finalize/De-Init/Execute/Lib-Load Statistics:
------------------------------------------------------------
Init Stats:
-----------
    NetRun:  331158 us

Execute Stats (Average):
------------------------
Total Inference Time:
---------------------
Graph 0 (model):
    NetRun:  2952 us
    Backend (Number of HVX threads used): 4 count
    Backend (RPC (execute) time): 2920 us
    Backend (QNN accelerator (execute) time): 2600 us
    Backend (Accelerator (execute) time): 2492 us
    Backend (QNN (execute) time): 2949 us
Execute Stats (Overall):
------------------------
    NetRun IPS:  214.8888 inf/sec
"""
    report = parse_viewer_text(sample)
    assert report.graph == "model"
    assert report.stats["average"].times_us["QNN (execute) time"] == 2949
    assert report.stats["average"].times_us["NetRun"] == 2952
    assert "overall" not in report.stats


def test_sniffing_picks_one_importer_per_format(tmp_path):
    infs = device_inferences("encoder", 2)
    names = {fmt: find_importer(write(tmp_path, fmt, "encoder", infs)).NAME for fmt in ("text", "csv", "json")}
    assert len(set(names.values())) == 3
    hub = tmp_path / "aihub.json"  # AI Hub's JSON is the AI Hub importer's, not ours
    hub.write_text(json.dumps({"execution_summary": {}, "execution_detail": []}))
    assert find_importer(hub).NAME == "aihub-download-profile-json"
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"messages": "no", "header": {}}))
    with pytest.raises(ProfileError, match="not a profile format this tool imports"):
        find_importer(other)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.replace("EXECUTE,", "INIT,"), "no EXECUTE rows"),
    (lambda t: t.replace("Event Identifier", "Event"), "no `Msg Timestamp"),
    (lambda t: t.replace(",CYCLES,BACKEND,SUB-EVENT,", ",US,BACKEND,SUB-EVENT,", 1), "expected CYCLES"),
    (lambda t: t.replace("EXECUTE,4,COUNT", "EXECUTE,-4,COUNT", 1), "not a finite non-negative"),
])
def test_malformed_csv_is_one_profile_error(tmp_path, mutate, message):
    path = tmp_path / "bad.csv"
    path.write_text(mutate(write_csv(GRAPH, device_inferences("encoder", 2))))
    with pytest.raises(ProfileError, match=message):
        parse_viewer_csv(path.read_text(), source=str(path))


def test_ops_of_another_variant_are_refused(context, tmp_path):
    path = write(tmp_path, "csv", "l1", device_inferences("l1", 1))
    with pytest.raises(ProfileError, match="does not have"):
        import_file(path, context("encoder", trace=False))


@pytest.mark.parametrize("op_line", [
    "        /stem/conv1/Conv_token_13:OpId_1263 (cycles): 22667 cycles",
    "    Backend (/stem/conv1/Conv_token_13:OpId_1263 (cycles)): 22667 cycles",
])
def test_text_op_lines_are_skipped_with_or_without_the_backend_wrapper(op_line):
    text = "\n".join([
        "Execute Stats (Average):", "------------------------", "Total Inference Time:", "---------------------",
        "Graph 0 (model):", "    NetRun:  2952 us", "    Backend (Accelerator (execute) time (cycles)): 30000 cycles",
        op_line, "    Backend (QNN (execute) time): 2949 us", "",
    ])
    report = parse_viewer_text(text)
    avg = report.stats["average"]
    assert avg.accelerator_cycles == 30000 and avg.time_us("QNN (execute) time") == 2949
    assert avg.ops == () and report.op_executions == [] and report.skipped_op_lines == 1


@pytest.mark.parametrize("fmt", ["text", "csv", "json"])
def test_profile_import_command_reads_each_format(exports, tmp_path, monkeypatch, caplog, fmt):
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app
    from swiftformer_qnn.measure.schema import load_profile

    monkeypatch.setenv("COLUMNS", "200")
    path = write(tmp_path, fmt, "l1", device_inferences("l1", 3))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["profile", "import", str(path), "--from", str(exports[("l1", True)]),
                                      "--device", "Samsung SM-S918B", "--qnn", "2.51", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (saved,) = out.glob("l1-w8a8-qnn*-samsung-sm-s918b.profile.json")
    p = load_profile(saved)
    assert p.source is LatencySource.QNN_NET_RUN and p.target.device == "Samsung SM-S918B"
    # The file's own version wins over --qnn where it states one (the text summary does not), and
    # the --qnn it overrules is said.
    assert p.toolchain.qnn_version == {"text": "2.51", "csv": "2.47.0", "json": "2.49.0"}[fmt]
    stated = {"csv": "2.47.0", "json": "2.49.0"}.get(fmt)
    said = f"--qnn 2.51 not used: the files say QNN {stated}"
    warned = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert (said in p.provenance.note and len(warned) == 1 and said in warned[0]) if stated else not warned
    if fmt == "text":  # no per-op figures from a text summary: no per-block table
        assert "per-op lines of the text summary not read" in p.provenance.note and p.ops == []
    else:
        assert "stage3.block4" in result.stdout and "derived from device cycles" in result.stdout


@pytest.mark.parametrize("qnn", ["abc", "latest", "2.47"])
def test_profile_import_checks_qnn_where_the_file_states_its_version(exports, tmp_path, caplog, qnn):
    """A CSV that names its QNN version still has --qnn checked: a value that is no version is
    refused in one line; one that names the file's release (2.47 for 2.47.0) is no conflict."""
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app
    from swiftformer_qnn.measure.schema import load_profile

    path = write(tmp_path, "csv", "l1", device_inferences("l1", 3))
    result = CliRunner().invoke(app, ["profile", "import", str(path), "--from", str(exports[("l1", True)]),
                                      "--device", "Samsung SM-S918B", "--qnn", qnn, "--out", str(tmp_path / "out")])
    if qnn == "2.47":
        assert result.exit_code == 0, result.output
        (saved,) = (tmp_path / "out").glob("*.profile.json")
        p = load_profile(saved)
        assert p.toolchain.qnn_version == "2.47.0" and "not used" not in p.provenance.note
        assert not [r for r in caplog.records if "not used" in r.getMessage()]
    else:
        assert result.exit_code == 2 and result.stderr.splitlines() == [
            f"error: --qnn {qnn!r} is not a QAIRT version. Give the version it ran with, e.g. --qnn 2.51."]
        assert not (tmp_path / "out").exists()
