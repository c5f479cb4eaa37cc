"""AI Hub's other answers, through the real `qai_hub` client against the stand-in: both transfer
routes (presigned URLs on the stand-in, S3 credentials through moto's S3 server), rate limits,
rejected requests, a client AI Hub no longer serves, QAIRT versions it does not offer, jobs that
stay queued, and servers that echo the token back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aihub_standin import HubStandIn, MotoS3, make_export_dir

from swiftformer_qnn.core.errors import HubError, UsageError
from swiftformer_qnn.core.redact import MASK, scrub
from swiftformer_qnn.profiling.aihub import HubOptions, HubSession, HubTarget
from swiftformer_qnn.profiling.devices import resolve_device
from swiftformer_qnn.profiling.exports import read_export

S23U = "Samsung Galaxy S23 Ultra"


@pytest.fixture
def s3(monkeypatch):
    with MotoS3() as server:
        # botocore reads the S3 endpoint from the environment (the client sets none of its own).
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(var, raising=False)
        yield server


def _standin(token, tmp_path, monkeypatch, **kw) -> HubStandIn:
    standin = HubStandIn(token, **kw).start()
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(standin.write_client_ini(tmp_path / "hubconf" / "client.ini")))
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
    return standin


@pytest.fixture
def hub(token, tmp_path, monkeypatch):
    standin = _standin(token, tmp_path, monkeypatch)
    yield standin
    standin.stop()


@pytest.fixture
def hub_s3(token, tmp_path, monkeypatch, s3):
    standin = _standin(token, tmp_path, monkeypatch, s3_endpoint=s3.endpoint)
    yield standin
    standin.stop()


def targets_for(exports, qnn=(None,), variants=("xs", "encoder")) -> list[HubTarget]:
    sources = [read_export(exports[v]) for v in variants]
    return [HubTarget(s.model_path, s.model_info, q) for s in sources for q in qnn]


def run(out: Path, exports, *, device=S23U, progress=None, **kw):
    opts = {"runs": 5, "poll_s": 0.01, "timeout_s": 60.0}
    targets = targets_for(exports, **kw)
    return HubSession(out, HubOptions(**opts), progress).run(targets, resolve_device(device))


def client_s3_requests(s3: MotoS3) -> list[dict]:
    """The S3 requests the client made (the stand-in's own boto3 calls are not transfers)."""
    return [r for r in s3.requests() if r.get("headers", {}).get("User-Agent", "").startswith("Botocore/")]


# --- transfers ---------------------------------------------------------------------------------


def test_s3_credentials_route_through_a_real_s3_server(hub_s3, s3, exports, tmp_path, token, capsys):
    result = run(tmp_path / "out", exports, variants=("encoder",))
    assert result.failures == [] and len(result.results) == 1
    (r,) = result.results
    # The model went up to S3 and the compiled binary came down from it; no presigned URL was used.
    assert hub_s3.count("POST", r"/api/v1/models/\w+/upload_complete/?") == 1
    assert hub_s3.count("PUT", r"/s3/.*") == 0 and hub_s3.count("GET", r"/s3/.*") == 0
    s3_calls = client_s3_requests(s3)
    methods = sorted(c["method"] for c in s3_calls)
    assert methods.count("PUT") == 1 and "GET" in methods  # the upload; the download (with a HEAD for its size)
    uploaded = next(m for m in hub_s3.models.values() if m.pb.file_upload_complete and m.pb.name == "model.qdq.onnx")
    assert uploaded.data == Path(r.target.model_path).read_bytes()
    assert r.binary_path.read_bytes().startswith(b"QNN-CONTEXT-BINARY")
    out = capsys.readouterr()
    assert token not in out.out + out.err and "standin-secret-key" not in out.out + out.err
    api = len(hub_s3.api_calls())
    print(f"\none profile, S3-credentials route: {api} API calls, {len(s3_calls)} S3 requests "
          f"({', '.join(f'{m} {methods.count(m)}' for m in sorted(set(methods)))}) at moto")


def test_presigned_route_counts(hub, exports, tmp_path):
    result = run(tmp_path / "out", exports, variants=("encoder",))
    assert result.failures == [] and len(result.results) == 1
    puts, gets = hub.count("PUT", r"/s3/.*"), hub.count("GET", r"/s3/.*")
    assert (puts, gets) == (1, 1)
    print(f"\none profile, presigned route: {len(hub.api_calls())} API calls, {puts + gets} transfers "
          f"(PUT {puts}, GET {gets}) at the stand-in")


def test_a_dropped_s3_transfer_is_retried(hub_s3, exports, tmp_path):
    hub_s3.transfer_failures = 1
    seen: list[str] = []
    result = run(tmp_path / "out", exports, variants=("encoder",), progress=seen.append)
    assert result.failures == [] and len(result.results) == 1
    assert any("uploading" in m and "retry 2 of 3" in m for m in seen), seen


def test_a_transfer_that_keeps_failing_is_one_line_and_the_other_targets_finish(hub_s3, exports, tmp_path, token):
    hub_s3.transfer_failures = 3  # every attempt of the first upload (xs)
    result = run(tmp_path / "out", exports)
    assert [r.target.model.variant for r in result.results] == ["encoder"]
    (failure,) = result.failures
    assert failure.stage == "upload" and failure.resumable
    line = failure.one_line()
    assert "\n" not in line and "NoSuchBucket" in line and token not in line


def test_a_failing_binary_download_names_the_compile_job(hub, exports, tmp_path, monkeypatch):
    # Presigned route: every download of the compiled binary is refused (403), uploads work.
    hub.fail_next("GET", r"/s3/download/.*", 403, "<Error><Code>AccessDenied</Code></Error>", times=3,
                  ctype="application/xml")
    result = run(tmp_path / "out", exports, variants=("encoder",))
    (failure,) = result.failures
    assert failure.stage == "download" and failure.url and "/jobs/" in failure.one_line()
    assert failure.resumable  # the jobs are done and journaled: a rerun downloads again


# --- the service's other answers --------------------------------------------------------------


def test_rate_limited_status_polls_are_retried_after_retry_after(hub, exports, tmp_path):
    hub.fail_next("GET", r"/api/v1/jobs/\w+/?", 429, '{"detail": "Request was throttled."}',
                  headers={"Retry-After": "0"}, times=2)
    seen: list[str] = []
    result = run(tmp_path / "out", exports, variants=("encoder",), progress=seen.append)
    assert result.failures == [] and len(result.results) == 1
    assert sum("Retry attempt" in m for m in seen) == 2, seen  # the client's quiet retries, said


def test_rate_limited_submission_loop_is_shown_as_progress(hub, exports, tmp_path, monkeypatch):
    import qai_hub.client as client_module

    slept: list[float] = []
    # The client's waits (its HTTP backoff, then 20 s between tries of its rate-limit loop) are
    # recorded instead of slept.
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    seen: list[str] = []

    def progress(msg: str) -> None:
        seen.append(msg)
        if ": compiled (" in msg:  # the profile (inference) job's submission is the one retried in a loop
            # 7 answers exhaust the HTTP layer's backoff; the 8th try is the loop's first retry.
            hub.fail_next("POST", r"/api/v1/jobs/?", 429, '{"detail": "Too many jobs in progress."}', times=7)

    result = run(tmp_path / "out", exports, variants=("encoder",), progress=progress)
    assert result.failures == [] and 20 in slept, (seen, slept)
    assert any("AI Hub client:" in m and "Retrying after 20 seconds" in m for m in seen), seen
    assert sum("AI Hub client:" in m and "Backing off" in m for m in seen) == 6, seen


@pytest.mark.parametrize("status, detail", [(400, "Model file is not a valid ONNX model."),
                                            (413, "Model file exceeds the 10 GB limit.")])
def test_a_rejected_request_fails_that_target_with_the_message(hub, exports, tmp_path, status, detail):
    hub.fail_next("POST", r"/api/v1/models/?", status, f'{{"detail": "{detail}"}}')
    result = run(tmp_path / "out", exports)
    assert [r.target.model.variant for r in result.results] == ["encoder"]
    (failure,) = result.failures
    assert failure.label.startswith("xs") and detail in failure.one_line()


def test_client_too_old_stops_everything_with_the_upgrade_advice(hub, exports, tmp_path):
    hub.fail_next("GET", r"/api/v1/devices/?", 426, "")
    with pytest.raises(HubError) as err:
        run(tmp_path / "out", exports)
    assert "pip install --upgrade qai-hub" in err.value.one_line()
    assert hub.count("POST", "/api/v1/models/") == 0


def test_a_qairt_version_ai_hub_does_not_offer_is_refused_before_any_upload(hub, exports, tmp_path):
    with pytest.raises(UsageError) as err:
        run(tmp_path / "out", exports, qnn=("2.30",))
    assert "2.31, 2.33, 2.37 (default), 2.42 (latest)" in err.value.one_line()
    assert hub.count("POST", "/api/v1/models/") == 0 and hub.count("GET", "/api/v1/frameworks/") == 1


def test_latest_resolves_to_a_version_and_the_journal_keys_on_it(hub, exports, tmp_path):
    out = tmp_path / "out"
    first = run(out, exports, variants=("encoder",), qnn=("latest",))
    (r,) = first.results
    assert r.target.qnn == "2.42" and r.target.requested == "latest"
    assert r.profile.toolchain.requested == "latest" and r.profile.toolchain.qnn_version == "2.42.0"
    assert r.profile_path.name == "encoder-w8a8-qnn2.42-samsung-galaxy-s23-ultra.profile.json"
    # AI Hub moves "latest": the same command must not resume jobs compiled under the old meaning.
    hub.frameworks[-1].api_tags[:] = []
    hub.frameworks.append(type(hub.frameworks[0])(name="QAIRT", api_version="2.45",
                                                  full_version="2.45.0.260301101010_201011", api_tags=["latest"]))
    second = run(out, exports, variants=("encoder",), qnn=("latest",))
    (r2,) = second.results
    assert r2.target.qnn == "2.45" and not r2.resumed.get("compile") and hub.jobs_created("compile") == 2
    third = run(out, exports, variants=("encoder",), qnn=("2.45",))  # the same version, pinned: resumed
    assert third.results[0].resumed.get("compile") and hub.jobs_created("compile") == 2


def test_unsupported_qairt_at_submission_is_that_targets_failure(hub, exports, tmp_path):
    hub.fail_next("POST", r"/api/v1/jobs/?", 400,
                  '{"detail": "QAIRT version 2.33 is not supported for target runtime qnn_context_binary."}')
    result = run(tmp_path / "out", exports, variants=("encoder",), qnn=("2.33", "2.42"))
    assert [r.target.qnn for r in result.results] == ["2.42"]
    (failure,) = result.failures
    assert failure.stage == "compile submission" and "2.33 is not supported" in failure.one_line()


def test_jobs_queued_for_several_polls_say_so(hub, exports, tmp_path):
    hub.polls_to_finish = 5
    seen: list[str] = []
    result = run(tmp_path / "out", exports, variants=("encoder",), progress=seen.append)
    assert result.failures == [] and len(result.results) == 1
    states = [m for m in seen if "job j" in m and ("created" in m or "provisioning" in m or "measuring" in m)]
    assert len(states) >= 3, seen  # each change of state once, not one line per poll
    assert len(states) < 10


def test_versions_that_ran_can_differ_from_those_compiled(hub, exports, tmp_path):
    hub.runtime_qairt = "2.42.1.260110101010_195000"
    seen: list[str] = []
    (r,) = run(tmp_path / "out", exports, variants=("encoder",), qnn=("2.42",), progress=seen.append).results
    tc = r.profile.toolchain
    assert (tc.compiled_with, tc.ran_with, tc.qnn_version) == ("2.42.0.251225135753_193295",
                                                              "2.42.1.260110101010_195000", "2.42.1")
    assert any("ran with 2.42.1" in m for m in seen)


def test_device_attributes_come_from_the_service(hub, exports, tmp_path):
    (r,) = run(tmp_path / "out", exports, device="s25 ultra", variants=("encoder",)).results
    t = r.profile.target
    assert (t.device, t.chipset, t.soc_model, t.htp_arch) == (
        "Samsung Galaxy S25 Ultra", "qualcomm-snapdragon-8-elite-for-galaxy", 69, 79)


# --- secrets -----------------------------------------------------------------------------------


def test_a_server_echoing_the_request_headers_does_not_leak_the_token(hub, exports, tmp_path, token):
    hub.fail_next("POST", r"/api/v1/models/?", 400, '{"detail": "Bad request; headers were: {headers}"}', times=2)
    result = run(tmp_path / "out", exports)
    assert len(result.failures) == 2
    for failure in result.failures:
        line = failure.one_line()
        assert token not in line and MASK in line and "headers were" in line


def test_scrub_removes_tokens_and_credentials(token, monkeypatch, tmp_path):
    ini = tmp_path / "client.ini"
    ini.write_text(f"[api]\napi_token = {token}\napi_url = http://x\nweb_url = http://x\n")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
    text = (f"token {token} | Authorization: token abcdefabcdefabcdef01 | api_token = zzzzzzzz | "
            "aws_secret_access_key='wJalrXUtnFEMI/K7MDENG' | https://s3/x?X-Amz-Signature=deadbeef&a=1 | "
            f"bare {token}")
    out = scrub(text)
    for secret in (token, "abcdefabcdefabcdef01", "zzzzzzzz", "wJalrXUtnFEMI/K7MDENG", "deadbeef"):
        assert secret not in out, (secret, out)
    assert "https://s3/x?X-Amz-Signature=" in out and "&a=1" in out
    assert scrub("nothing secret here: 2.42.0") == "nothing secret here: 2.42.0"


def test_logs_of_a_run_hold_no_token(hub, exports, tmp_path, token, caplog):
    caplog.set_level(logging.DEBUG)
    run(tmp_path / "out", exports, variants=("encoder",))
    assert caplog.records and all(token not in r.getMessage() for r in caplog.records)


# --- outputs on the phone ----------------------------------------------------------------------


@pytest.fixture
def xs_export_4(onnx_models, tmp_path) -> Path:
    import numpy as np

    m = onnx_models["xs"]
    x = np.random.default_rng(7).standard_normal((4, 3, 64, 64)).astype(np.float32)
    return make_export_dir(tmp_path / "xs4", qdq=m["qdq"], sim=m["sim"], variant="xs", precision="w8a8",
                           input_shape=[1, 3, 64, 64], sample_input=x)


@pytest.mark.parametrize("mode", ["presigned", "s3 credentials"])
def test_check_outputs_runs_heldout_inputs_on_the_device(mode, token, tmp_path, monkeypatch, xs_export_4, request):
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app
    from swiftformer_qnn.measure.schema import load_profile

    monkeypatch.setenv("COLUMNS", "200")
    kw = {}
    if mode == "s3 credentials":
        kw["s3_endpoint"] = request.getfixturevalue("s3").endpoint
    hub = _standin(token, tmp_path, monkeypatch, **kw)
    try:
        out = tmp_path / "out"
        res = CliRunner().invoke(app, ["profile", "--from", str(xs_export_4), "--check-outputs", "--runs", "5",
                                       "--poll", "0.01", "--out", str(out)])
        assert res.exit_code == 0, res.output
        (path,) = out.glob("*.profile.json")
        oc = load_profile(path).output_check
        assert oc is not None and oc.vs_cpu_qdq.samples == 4 and oc.job_id
        # The HTP's own rounding only (2e-3 relative): far above what a collapsed model gives.
        assert oc.vs_cpu_qdq.sqnr_db > 40 and oc.vs_cpu_qdq.top1_agreement == 1.0
        assert oc.vs_fp32.sqnr_db < oc.vs_cpu_qdq.sqnr_db  # quantization error on top
        assert "Device outputs on heldout.npy (4 held-out inputs): SQNR vs CPU QDQ" in res.stdout
        inference = [j for j in hub.jobs.values() if j.kind == "inference"]
        assert sorted(j.pb.inference_job.is_profiling_on for j in inference) == [False, True]
        assert len(hub.datasets) == 2  # the inputs up, the outputs down
        assert token not in res.stdout + res.stderr
    finally:
        hub.stop()


def _cpu_outputs(model: Path, x):
    """`model` on onnxruntime's CPU EP, one input at a time (the test's own reference run)."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


@pytest.mark.parametrize(("saved", "run_again"), [
    ("fp32 and CPU QDQ", []),
    ("fp32 only", ["model.qdq.onnx"]),  # an export stopped before verify
    ("both, from other held-out inputs", ["model.qdq.onnx", "model.sim.onnx"]),
    ("both, CPU QDQ of another QDQ graph", ["model.qdq.onnx"]),
])
def test_check_outputs_reads_the_outputs_the_export_computed(saved, run_again, hub, onnx_models, tmp_path,
                                                             monkeypatch):
    """An export holds validate's fp32 and cpu_qdq's CPU QDQ outputs on its held-out inputs: the
    check compares the phone with them, and runs the graphs whose outputs the export lacks or
    computed from anything but these inputs and this QDQ graph."""
    import json

    import numpy as np

    import swiftformer_qnn.measure.agreement as agreement
    from swiftformer_qnn.profiling.orchestrate import HubRequest, run_on_hub

    m = onnx_models["xs"]
    x = np.random.default_rng(7).standard_normal((4, 3, 64, 64)).astype(np.float32)
    qdq_out = None if saved == "fp32 only" else _cpu_outputs(m["qdq"], x)
    export = make_export_dir(tmp_path / "xs4", qdq=m["qdq"], sim=m["sim"], variant="xs", precision="w8a8",
                             input_shape=[1, 3, 64, 64], sample_input=x, fp32_outputs=_cpu_outputs(m["sim"], x),
                             cpu_qdq_outputs=qdq_out)
    if saved.startswith("both, "):  # the records name other files than the export's own
        manifest = json.loads((export / "manifest.json").read_text())
        other = "0" * 64
        for stage in manifest["stages"]:
            if stage["name"] in ("validate", "cpu_qdq") and "inputs" in saved:
                stage["inputs"]["inputs/heldout.npy"] = other
            if stage["name"] == "cpu_qdq" and "QDQ graph" in saved:
                stage["inputs"]["quantize/model.qdq.onnx"] = other
        (export / "manifest.json").write_text(json.dumps(manifest))
    ran = []
    real_run_cpu = agreement.run_cpu
    monkeypatch.setattr(agreement, "run_cpu", lambda model, inputs: ran.append(Path(model).name) or real_run_cpu(model, inputs))
    result = run_on_hub(HubRequest(device=S23U, from_dirs=(export,), runs=5, poll_s=0.01, out_dir=tmp_path / "out",
                                   check_outputs=True))
    (item,) = result.profiled
    oc = item.profile.output_check
    assert ran == run_again
    saved_qdq, saved_fp32 = "model.qdq.onnx" not in run_again, "model.sim.onnx" not in run_again
    assert oc.cpu_qdq_reference == ("heldout_qdq_cpu.npy, the export's cpu_qdq outputs" if saved_qdq
                                    else "model.qdq.onnx on onnxruntime's CPU EP")
    assert oc.fp32_reference == ("heldout_fp32.npy, the export's validate outputs" if saved_fp32
                                 else "model.sim.onnx on onnxruntime's CPU EP")
    assert oc.vs_cpu_qdq.samples == 4 and oc.vs_cpu_qdq.sqnr_db > 40 and oc.vs_cpu_qdq.top1_agreement == 1.0
    assert oc.vs_fp32.sqnr_db < oc.vs_cpu_qdq.sqnr_db


def test_check_outputs_catches_a_model_that_collapses_on_the_npu(hub, xs_export_4, tmp_path):
    from swiftformer_qnn.profiling.orchestrate import HubRequest, run_on_hub

    hub.npu_collapse = True
    result = run_on_hub(HubRequest(device=S23U, from_dirs=(xs_export_4,), runs=5, poll_s=0.01,
                                   out_dir=tmp_path / "out", check_outputs=True))
    (item,) = result.profiled
    oc = item.profile.output_check
    assert oc.vs_cpu_qdq.sqnr_db < 3 and oc.vs_fp32.sqnr_db < 3
