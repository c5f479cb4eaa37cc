"""The AI Hub backend, driven through the real `qai_hub` client against a local stand-in.

The stand-in (`aihub_standin.py`) speaks AI Hub's REST API with the client's own protobuf
messages; everything above the wire (uploads, job submission, polling, downloads, the
client's `_profile_pb_to_python_dict`) is the client's code. Payload layer names come from
the ONNX actually uploaded (real QDQ exports of SwiftFormer-XS and the encoder block).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aihub_standin import (
    HubStandIn,
    build_profile_detail,
    files_containing,
    make_export_dir,
    unused_port,
)
from qai_hub.client import _profile_pb_to_python_dict

from swiftformer_qnn.core.errors import HubError, ProfileError
from swiftformer_qnn.measure.attribution import unattributed_share
from swiftformer_qnn.measure.schema import (
    LatencyBasis,
    LatencySource,
    ModelInfo,
    Provenance,
    TargetInfo,
    TimeBasis,
    ToolchainInfo,
    block_times,
    load_profile,
    op_times,
)
from swiftformer_qnn.profiling.aihub import HubOptions, HubSession, HubTarget
from swiftformer_qnn.profiling.aihub_client import check_hub_config
from swiftformer_qnn.profiling.aihub_journal import JOURNAL_NAME
from swiftformer_qnn.profiling.aihub_payload import onnx_sources, profile_from_hub, qnn_op_name
from swiftformer_qnn.profiling.devices import resolve_device
from swiftformer_qnn.profiling.exports import read_export

S23U = "Samsung Galaxy S23 Ultra"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def hub(token, tmp_path, monkeypatch):
    with HubStandIn(token) as standin:
        ini = standin.write_client_ini(tmp_path / "hubconf" / "client.ini")
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
        monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
        yield standin


def targets_for(exports: dict[str, Path], qnn=(None,), variants=("xs", "encoder")) -> list[HubTarget]:
    sources = [read_export(exports[v]) for v in variants]
    return [HubTarget(s.model_path, s.model_info, q) for s in sources for q in qnn]


def session(out: Path, progress=None, **options) -> HubSession:
    opts = {"runs": 5, "poll_s": 0.01, "timeout_s": 60.0, **options}
    return HubSession(out, HubOptions(**opts), progress)


def compile_jobs(hub: HubStandIn) -> int:
    return hub.jobs_created("compile")


def profile_jobs(hub: HubStandIn) -> int:
    return hub.jobs_created("inference")


# --- configuration ----------------------------------------------------------------------------


def test_config_missing_file_says_how_to_configure(tmp_path, monkeypatch):
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "nope.ini"))
    with pytest.raises(HubError) as err:
        check_hub_config()
    assert "qai-hub configure --api_token" in err.value.one_line()
    assert str(tmp_path / "nope.ini") in err.value.one_line()


@pytest.mark.parametrize(
    "body",
    ["[api]\napi_url = http://x\nweb_url = http://x\n", "[api]\napi_token = \napi_url = http://x\nweb_url = http://x\n", "not an ini"],
)
def test_config_without_token(tmp_path, monkeypatch, body):
    ini = tmp_path / "client.ini"
    ini.write_text(body)
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
    with pytest.raises(HubError) as err:
        check_hub_config()
    assert "qai-hub configure --api_token" in err.value.one_line()


def test_config_found_without_exposing_the_token(hub, token):
    cfg = check_hub_config()
    assert cfg.api_url == hub.url
    assert token not in repr(cfg) and token not in str(vars(cfg))


@pytest.mark.parametrize("from_env", [True, False])
def test_the_config_file_is_where_the_client_looks(tmp_path, monkeypatch, from_env):
    from qai_hub import api_utils

    from swiftformer_qnn.core.redact import client_config_path

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if from_env:
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "elsewhere" / "hub.ini"))
    else:
        monkeypatch.delenv("QAIHUB_CLIENT_INI", raising=False)
    assert client_config_path() == Path(api_utils.get_config_path(expanduser=True))


def test_no_config_file_is_answered_without_the_client(tmp_path, hub):
    """The export's closing hint asks whether a token is configured: without a config file, the
    client (0.3-0.5 s to import) is not imported; with the stand-in's file, it is read."""
    probe = ("import sys; from swiftformer_qnn.profiling.aihub_client import hub_configured; "
             "print(hub_configured(), 'qai_hub' in sys.modules)")
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    env.pop("QAIHUB_CLIENT_INI", None)
    none = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert none.stdout.split() == ["False", "False"]
    configured = subprocess.run([sys.executable, "-c", probe], env=os.environ, capture_output=True, text=True,
                                check=True)
    assert configured.stdout.split() == ["True", "True"]


def test_the_export_hint_names_a_phone_only_with_a_token(tmp_path, monkeypatch, token):
    from rich.console import Console

    from swiftformer_qnn.cli.render import _next_after_export

    def hint() -> str:
        console = Console(record=True, width=200)
        _next_after_export(console, tmp_path / "build", estimated=True)
        return console.export_text()

    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "none.ini"))
    assert "profile estimate --from" in hint() and "no AI Hub token" in hint()
    with HubStandIn(token) as standin:
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(standin.write_client_ini(tmp_path / "hub" / "client.ini")))
        assert 'profile --device "Galaxy S23 Ultra"' in hint()


# --- conversion of the client's own profile dict ----------------------------------------------


def _convert(payload, variant="xs", sources=None, graph=None):
    return profile_from_hub(
        payload,
        model=ModelInfo(variant=variant, input_shape=[1, 3, 64, 64], precision="w8a8"),
        target=TargetInfo(device=S23U),
        toolchain=ToolchainInfo(qnn_version="2.31"),
        provenance=Provenance(),
        sources=sources,
        graph=graph,
    )


def test_conversion_of_a_hub_payload(onnx_models):
    qdq = onnx_models["xs"]["qdq"]
    detail = build_profile_detail(qdq.read_bytes(), runs=7, seed="conv", cpu_op_types=("Quantize",), layer_fields="both")
    payload = _profile_pb_to_python_dict(detail)  # exactly what download_profile() returns
    runs = payload["execution_summary"]["all_inference_times"]
    p = _convert(payload, sources=onnx_sources(qdq))

    assert p.source is LatencySource.AIHUB and p.is_device_latency
    assert p.latency.runs_us == [float(t) for t in runs] and p.latency.run_count == 7
    assert p.latency.min_us == min(runs) and p.latency.max_us == max(runs)
    assert p.load.first_load_us == 41_000 and p.load.warm_load_us == 2_300
    assert p.load.inference_peak_memory_bytes == 18_400_000 and p.load.peak_memory_bytes == 31_200_000
    assert [op.name for op in p.ops] == [d["name"] for d in payload["execution_detail"]]
    layers = payload["execution_detail"]
    assert [(op.execution_time_us, op.execution_cycles) for op in p.ops] == [
        (d["execution_time"], d["execution_cycles"]) for d in layers]  # both kept, as given
    assert any(d["execution_time"] == 0 and d["execution_cycles"] > 0 for d in layers)  # sub-microsecond layers
    # Cycles are the basis: the blocks add up to the measured median.
    assert sum(b.time for b in block_times(p).values()) == pytest.approx(p.latency.median_us)
    assert {b.basis for b in block_times(p).values()} == {TimeBasis.DERIVED_FROM_CYCLES}
    assert p.latency.estimate_us == payload["execution_summary"]["estimated_inference_time"] == min(runs)
    assert p.latency.label() == "median of 7 runs"
    # The graph input's Quantize runs on the CPU here; the compute unit mix says so.
    assert block_times(p)["stem"].compute_units == {"CPU": 1, "NPU": 2}


def test_uploaded_graph_attributes_ops_whose_names_lost_the_module_path(onnx_models):
    """AI Hub gives names only. `Gemm_1` (a to_query Linear after graph rewrites) names no
    block; the uploaded graph's Q/DQ neighbours (its bias `stage0.block2_..._to_query.bias`)
    do. Shares are of the stand-in's made-up times; the names are the real graph's."""
    qdq = onnx_models["xs"]["qdq"]
    payload = _profile_pb_to_python_dict(build_profile_detail(qdq.read_bytes(), runs=3, seed="attr"))
    by_name = _convert(payload)
    with_graph = _convert(payload, sources=onnx_sources(qdq))
    lost = [op.name for op in by_name.ops if op.attribution.block == "other"]
    assert "Gemm_1" in lost and "image_QuantizeLinear" in lost
    assert unattributed_share(by_name) > 0
    assert unattributed_share(with_graph) == 0.0
    gemm = next(op for op in with_graph.ops if op.name == "Gemm_1")
    assert (gemm.attribution.block, gemm.attribution.part, gemm.attribution.via) == ("stage0.block2", "attention", "op_trace")
    assert any("to_query.bias_DequantizeLinear" in n for n in gemm.onnx_nodes)
    print(f"\nunattributed share (xs@64, stand-in payload): names only {unattributed_share(by_name):.1%}, "
          f"with the uploaded graph {unattributed_share(with_graph):.1%}")


def _truth_blocks(model_path: Path) -> dict[str, str | None]:
    """ONNX node -> the block it computes, read off the graph without the attribution code: the
    first `/stage<i>/block<j>...` (or stem, head, downsample, the standalone block) module path
    in the node's name or output tensors, else in those of the nodes after it, else before it."""
    import re
    from collections import deque

    import onnx

    def block(text: str) -> str | None:
        if m := re.match(r"/stage(\d+)/(downsample|block(\d+))", text):
            return f"stage{m[1]}.downsample" if m[2] == "downsample" else f"stage{m[1]}.block{m[3]}"
        if m := re.match(r"/(stem|head)/", text):
            return m[1]
        return "encoder" if text.startswith("/swiftformer_encoder/") else None

    g = onnx.load(str(model_path), load_external_data=False).graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def walk(start, step, tensors) -> str | None:
        seen, todo = {start.name}, deque([start])
        while todo:
            node = todo.popleft()
            for text in (node.name, *tensors(node)):
                if found := block(text):
                    return found
            for nxt in step(node):
                if nxt.name not in seen:
                    seen.add(nxt.name)
                    todo.append(nxt)
        return None

    def after(n):
        return [c for o in n.output for c in consumers.get(o, [])]

    def before(n):
        return [producer[i] for i in n.input if i in producer]

    return {n.name: walk(n, after, lambda x: x.output) or walk(n, before, lambda x: x.input) for n in g.node}


@pytest.mark.parametrize("graph", ["qdq", "sim"])  # the uploads of w8a8/w8a16 and of fp16
def test_attribution_of_ops_fused_and_renamed_as_qnn_builds_them(onnx_models, graph):
    """Layers as QNN makes them (`fuse_like_qnn`): the stem's Conv+Relu as one op named after the
    Conv, ReduceL2 split into ops named `<node>ElementWiseMultiply` and the like, `Gemm_<n>` /
    `LpNormalization_fused_ReduceL2_<n>` named after no module, Q/DQ folded, and layout
    transposes that come from no ONNX node. Every op that came from a node is placed in that
    node's block (ground truth: module paths along the uploaded graph); only the inserted ones
    stay `other`, an honest, small remainder."""
    from aihub_standin import layers_from_onnx

    from swiftformer_qnn.profiling.emulator import onnx_node_tensors

    model = onnx_models["xs"][graph]
    data = model.read_bytes()
    layers = {layer.name: layer for layer in layers_from_onnx(data, fused=True)}
    payload = _profile_pb_to_python_dict(build_profile_detail(data, runs=3, seed="fused", fused=True))
    assert [d["name"] for d in payload["execution_detail"]] == list(layers)
    truth = _truth_blocks(model)

    placed = _convert(payload, sources=onnx_sources(model), graph=onnx_node_tensors(model))
    by_name = _convert(payload)
    wrong = {}
    for op in placed.ops:
        layer = layers[op.name]
        expected = {truth[s] for s in layer.sources} or {"other"}
        assert len(expected) == 1, (op.name, expected)  # the oracle agrees with itself on fused ops
        if op.attribution.block not in expected:
            wrong[op.name] = (op.attribution.block, expected.pop())
    assert wrong == {}

    # The fusions and renames happened, and are placed.
    ops = {op.name: op for op in placed.ops}
    if graph == "sim":  # only the float graph still has the stem's Relu (the quantizer folds it)
        stem = ops["_stem_conv1_Conv"]
        assert "/stem/Relu" in layers[stem.name].sources and stem.attribution.block == "stem"
        assert not any(name.endswith("Relu") for name in ops)
    assert ops["Gemm_1"].attribution.block == "stage0.block2"
    if graph == "qdq":  # QNN preprocessing (part of quantization) fuses F.normalize into LpNormalization
        assert ops["LpNormalization_fused_ReduceL2_0"].attribution.block == "stage0.block2"
    split = [op for name, op in ops.items() if name.endswith("ReduceL2_2ElementWiseMultiply")]
    assert len(split) == 4 and all(op.attribution.via == "name" for op in split)
    inserted = [op for op in placed.ops if not layers[op.name].sources]
    assert [op.name for op in inserted] == ["Transpose_token_46"]  # xs: a 4-D input, 2-D logits
    # Honest bound: what no name and no node can place is the inserted transpose alone.
    share = unattributed_share(placed)
    figure = dict(op_times(placed).values)
    assert 0 < share == pytest.approx(
        sum(figure[placed.ops.index(op)] for op in inserted) / sum(figure.values()))
    assert share < 0.02
    assert unattributed_share(by_name) > share  # names alone leave Gemm_<n> and friends unplaced
    print(f"\nunattributed (xs@64 {graph}, ops fused and renamed as QNN does): names only "
          f"{unattributed_share(by_name):.1%}, with the uploaded graph {share:.2%} (inserted layout ops)")


def test_mangled_names_match_the_onnx_nodes(onnx_models):
    sources = onnx_sources(onnx_models["xs"]["qdq"])
    name = qnn_op_name("/stage0/block2_swiftformer_encoder/attention/MatMul")
    assert name == "_stage0_block2_swiftformer_encoder_attention_MatMul"
    assert sources[name][0] == "/stage0/block2_swiftformer_encoder/attention/MatMul"


def test_legacy_payload_with_only_an_estimate():
    from qai_hub import public_api_pb2 as pb

    detail = pb.ProfileDetail(execution_time=1500, load_time=9000, peak_memory_usage=10)
    detail.layer_details.append(pb.LayerDetail(name="_stem_conv1_Conv", layer_type_name="Conv2d",
                                               compute_unit=pb.ComputeUnit.COMPUTE_UNIT_NPU, execution_cycles=4200))
    p = _convert(_profile_pb_to_python_dict(detail))
    assert (p.latency.min_us, p.latency.median_us, p.latency.run_count, p.latency.runs_us) == (1500, 1500, 1, [])
    assert p.latency.basis is LatencyBasis.AIHUB_ESTIMATE and p.latency.label() == "AI Hub estimate (min of its runs)"
    # No layer has microseconds: the device's cycles are kept, and the block's time derives from them.
    assert (p.ops[0].execution_cycles, p.ops[0].execution_time_us) == (4200, None)
    stem = block_times(p)["stem"]
    assert (stem.time, stem.basis, stem.cycles) == (1500, TimeBasis.DERIVED_FROM_CYCLES, 4200)
    assert p.ops[0].attribution.block == "stem"


def test_empty_payload_is_a_profile_error():
    with pytest.raises(ProfileError):
        _convert({})


# --- end to end through the client ----------------------------------------------------------


def test_profiles_two_variants_with_two_qnn_versions(hub, exports, tmp_path, token, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's request lines included
    out = tmp_path / "run"
    seen: list[str] = []

    def progress(msg: str) -> None:
        seen.append(msg)
        if " job " in msg and "submitted" in msg:
            # The id is on disk before anything else happens.
            job_id = msg.split(" job ")[1].split()[0]
            assert job_id in (out / JOURNAL_NAME).read_text()

    run = session(out, progress).run(targets_for(exports, qnn=("2.31", "2.33")), resolve_device("s23 ultra"))

    assert run.failures == []
    assert run.device == S23U
    assert sorted(r.profile_path.name for r in run.results) == sorted(
        f"{v}-w8a8-qnn{q}-samsung-galaxy-s23-ultra.profile.json" for v in ("xs", "encoder") for q in ("2.31", "2.33")
    )
    # Submit all, then wait: every compile job exists before the first profile job.
    kinds = [j.kind for j in hub.jobs.values()]
    assert kinds == ["compile"] * 4 + ["inference"] * 4
    # One upload per model file, shared by both QAIRT versions.
    assert hub.count("POST", "/api/v1/models/") == 2

    for r in run.results:
        p = load_profile(r.profile_path)
        assert p.source is LatencySource.AIHUB
        # Chipset, soc model and Hexagon version as AI Hub's device record says (soc-model:43, hexagon:v73).
        assert (p.target.device, p.target.os, p.target.chipset, p.target.soc_model, p.target.htp_arch) == (
            S23U, "14", "qualcomm-snapdragon-8gen2", 43, 73)
        # Asked for, compiled with (2.31 binaries record QNN_SDK_VERSION, newer ones QAIRT_SDK_VERSION), ran with.
        full = hub.qairt_full(r.target.qnn)
        tc = p.toolchain
        assert (tc.requested, tc.ran_with, tc.qairt_version) == (r.target.qnn, full, full)
        assert tc.compiled_with == (f"v{full.split('_')[0]}" if r.target.qnn == "2.31" else full)
        assert tc.qnn_version == f"{r.target.qnn}.0"
        assert p.latency.run_count == 5
        raw = json.loads(r.raw_path.read_text())
        assert [op.name for op in p.ops] == [d["name"] for d in raw["execution_detail"]]
        assert p.latency.runs_us == [float(t) for t in raw["execution_summary"]["all_inference_times"]]
        compile_id, profile_id = p.provenance.job_ids["compile"], p.provenance.job_ids["profile"]
        assert p.provenance.urls["profile"] == f"{hub.url}/jobs/{profile_id}/"
        assert f"--qairt_version {r.target.qnn}" in hub.jobs[compile_id].pb.compile_job.options
        target_model = hub.jobs[compile_id].pb.compile_job.target_model.model_id
        assert r.binary_path == out / r.profile_path.name.replace(".profile.json", ".bin")
        assert r.binary_path.read_bytes() == hub.models[target_model].data
        assert unattributed_share(p) == 0.0
        assert not r.resumed

    journal = json.loads((out / JOURNAL_NAME).read_text())["entries"]
    assert sorted(e["kind"] for e in journal.values()) == ["compile"] * 4 + ["model"] * 2 + ["profile"] * 4
    assert {e.get("state") for e in journal.values() if e["kind"] != "model"} == {"SUCCESS"}
    assert files_containing(token, out, tmp_path / "cache") == []
    assert token not in caplog.text and "Authorization" not in caplog.text
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # the scan saw the HTTP layer's logs
    calls = len(hub.api_calls())
    print(f"\nAI Hub API calls for 4 profiles (2 uploads, 4 compiles, 4 profiles): {calls}, "
          f"{calls / 4:.1f} per profile; + {len(hub.requests) - calls} presigned transfers")


def test_interrupted_run_resumes_the_same_jobs(hub, exports, tmp_path):
    out = tmp_path / "run"
    hub.hold = {"inference"}  # compiles finish, profiles keep running
    first = session(out, timeout_s=0.3).run(targets_for(exports), resolve_device("8gen2"))
    assert first.results == []
    assert [f.stage for f in first.failures] == ["timeout", "timeout"]
    assert all(f.resumable and f.url.startswith(hub.url) for f in first.failures)
    jobs_before, uploads_before = len(hub.jobs), hub.count("POST", "/api/v1/models/")
    assert (compile_jobs(hub), profile_jobs(hub)) == (2, 2)

    hub.hold = set()
    second = session(out).run(targets_for(exports), resolve_device("8gen2"))
    assert second.failures == [] and len(second.results) == 2
    assert len(hub.jobs) == jobs_before and hub.count("POST", "/api/v1/jobs/") == 4
    assert hub.count("POST", "/api/v1/models/") == uploads_before
    assert all(r.resumed == {"compile": True, "profile": True} for r in second.results)

    # A repeated command writing elsewhere finds the jobs through the cache index.
    third = session(tmp_path / "elsewhere").run(targets_for(exports), resolve_device("sm8550"))
    assert len(third.results) == 2 and len(hub.jobs) == jobs_before
    assert {r.profile.provenance.job_ids["profile"] for r in third.results} == {
        r.profile.provenance.job_ids["profile"] for r in second.results
    }


def test_ctrl_c_after_the_first_submission_resubmits_nothing(hub, exports, tmp_path):
    out = tmp_path / "run"

    def interrupt(msg: str) -> None:
        if "compile job" in msg and "submitted" in msg:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session(out, interrupt).run(targets_for(exports), resolve_device(S23U))
    assert compile_jobs(hub) == 1

    run = session(out).run(targets_for(exports), resolve_device(S23U))
    assert len(run.results) == 2
    assert compile_jobs(hub) == 2  # the interrupted one was resumed, the other submitted once
    assert sorted(r.resumed.get("compile", False) for r in run.results) == [False, True]


def test_failed_compile_is_reported_with_its_url_and_not_retried(hub, exports, tmp_path):
    reason = "Failed to compile for QAIRT 2.33: op L2Norm is not supported by this QAIRT version."
    hub.fail_compile = lambda name, options: reason if "--qairt_version 2.33" in options else None
    out = tmp_path / "run"
    run = session(out).run(targets_for(exports, qnn=("2.33", "2.31"), variants=("encoder",)), resolve_device(S23U))

    assert [r.target.qnn for r in run.results] == ["2.31"]  # the other target finished
    (failure,) = run.failures
    assert (failure.label, failure.stage, failure.reason, failure.resumable) == ("encoder-w8a8-qnn2.33", "compile", reason, False)
    assert failure.url == f"{hub.url}/jobs/{failure.job_id}/" and failure.url in failure.one_line()
    assert compile_jobs(hub) == 2 and profile_jobs(hub) == 1

    again = session(out).run(targets_for(exports, qnn=("2.33",), variants=("encoder",)), resolve_device(S23U))
    assert again.failures[0].job_id == failure.job_id and compile_jobs(hub) == 2

    retried = session(out, retry_failed=True).run(
        targets_for(exports, qnn=("2.33",), variants=("encoder",)), resolve_device(S23U)
    )
    assert compile_jobs(hub) == 3 and retried.failures[0].job_id != failure.job_id


def test_transient_errors_while_polling_are_retried(hub, exports, tmp_path, monkeypatch, caplog):
    import qai_hub.util.session as client_session

    # Make the client give up on a 503 at once, so our polling loop is what retries.
    monkeypatch.setattr(client_session, "MAX_RETRIES", 0)

    def flake_after_submission(msg: str) -> None:
        if "compile job" in msg and "submitted" in msg:
            hub.flaky_polls = 3

    caplog.set_level(logging.WARNING, logger="swiftformer_qnn.profiling.aihub")
    run = session(tmp_path / "run", flake_after_submission).run(
        targets_for(exports, variants=("encoder",)), resolve_device(S23U)
    )
    assert run.failures == [] and len(run.results) == 1
    assert sum("polling" in r.message for r in caplog.records) == 3
    assert compile_jobs(hub) == 1


def test_unreachable_hub_is_one_error_after_the_clients_own_retries(exports, tmp_path, monkeypatch, caplog, token):
    import qai_hub.util.session as client_session

    ini = tmp_path / "client.ini"
    url = f"http://127.0.0.1:{unused_port()}"
    ini.write_text(f"[api]\napi_token = {token}\napi_url = {url}\nweb_url = {url}\nverbose = True\n")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
    # The client backs off 0.75 * 2^n s for 6 retries; shorten that, keep the mechanism.
    monkeypatch.setattr(client_session, "MAX_RETRIES", 2)
    monkeypatch.setattr(client_session, "BACKOFF_FACTOR", 0.01)
    caplog.set_level(logging.INFO, logger="LogRetry")

    with pytest.raises(HubError) as err:
        session(tmp_path / "run").run(targets_for(exports), resolve_device(S23U))
    message = err.value.one_line()
    assert "Could not connect to Qualcomm AI Hub" in message and "rerun the same command" in message
    assert token not in message
    assert sum("Retry attempt" in r.message for r in caplog.records) == 2


def test_rejected_token_is_one_error(hub, exports, tmp_path, monkeypatch):
    ini = hub.write_client_ini(tmp_path / "bad" / "client.ini", token="sfq-not-the-token")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
    with pytest.raises(HubError) as err:
        session(tmp_path / "run").run(targets_for(exports), resolve_device(S23U))
    assert "Failed to authenticate" in err.value.one_line()
    assert "sfq-not-the-token" not in err.value.one_line()
    assert all(not r.authorized for r in hub.requests)


def test_fp16_uploads_the_float_graph_for_ai_hub_to_run_in_fp16(hub, onnx_models, tmp_path):
    m = onnx_models["encoder"]
    d = make_export_dir(tmp_path / "fp16", qdq=m["qdq"], sim=m["sim"], variant="encoder", precision="fp16",
                        input_shape=[1, 96, 32, 32])
    source = read_export(d)
    assert source.model_path.name == "model.sim.onnx"
    run = session(tmp_path / "run").run([HubTarget(source.model_path, source.model_info, "2.31")], resolve_device(S23U))
    (result,) = run.results
    (compile_job,) = [j for j in hub.jobs.values() if j.kind == "compile"]
    assert compile_job.pb.compile_job.options == (
        "--target_runtime qnn_context_binary --qairt_version 2.31 --quantize_full_type float16"
    )
    assert hub.models[compile_job.source_model_id].data == m["sim"].read_bytes()
    assert result.profile_path.name == "encoder-fp16-qnn2.31-samsung-galaxy-s23-ultra.profile.json"
    # A float graph has no Quantize/Dequantize layers.
    assert not any(op.op_type in ("Quantize", "Dequantize") for op in result.profile.ops)


def test_profile_that_does_not_fit_the_variant_is_a_conversion_failure(hub, onnx_models, tmp_path):
    # The manifest says XS, the uploaded graph is the standalone block: its op names name a
    # block XS does not have, and attribution refuses rather than guessing.
    m = onnx_models["encoder"]
    d = make_export_dir(tmp_path / "mislabelled", qdq=m["qdq"], sim=m["sim"], variant="xs", precision="w8a8",
                        input_shape=[1, 96, 32, 32])
    out = tmp_path / "run"
    run = session(out).run(targets_for({"xs": d}, variants=("xs",)), resolve_device(S23U))
    (failure,) = run.failures
    assert failure.stage == "conversion" and "does not have" in failure.reason and not failure.resumable
    assert failure.url == f"{hub.url}/jobs/{failure.job_id}/"
    # Named after AI Hub's default QAIRT, resolved through get_frameworks() before submission.
    assert [p.name for p in out.glob("*.raw.json")] == ["xs-w8a8-qnn2.37-samsung-galaxy-s23-ultra.raw.json"]
    assert list(out.glob("*.profile.json")) == []


def test_device_ai_hub_does_not_offer(hub, exports, tmp_path):
    with pytest.raises(HubError) as err:
        session(tmp_path / "run").run(targets_for(exports), resolve_device("Google Pixel 8"))
    assert "--device list" in err.value.one_line()
    assert hub.count("POST", "/api/v1/models/") == 0
