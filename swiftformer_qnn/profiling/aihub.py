"""Profiling on real phones through Qualcomm AI Hub, with the `qai_hub` client.

One profile is: upload the exported ONNX, compile it to a QNN context binary for one
QAIRT version (`--target_runtime qnn_context_binary --qairt_version X`), profile the
binary on the device (`submit_inference_job(..., profile=True)`), download the profile
and the binary, and convert the client's profile dict into our schema.

AI Hub jobs cost time and quota, so every id (uploaded model, compile job, profile job)
is written to a journal the moment it exists: an interrupted or repeated command finds
the same jobs (`get_job(id)`) instead of submitting new ones. The journal lives in the
output directory and, keyed by content (model hash, device, options, AI Hub URL), in the
user cache, so a repeated command with a fresh output directory resumes too.

Retries: the client itself retries transient HTTP failures (connection errors, 5xx, 429)
with exponential backoff on every request. On top of that, polling a running job keeps
going through transient failures (a job on AI Hub does not die with our connection).
A failed job is never resubmitted on its own: it is reported with its URL, and
`--retry-failed` resubmits it on request.

The API token is never read into anything this module returns, logs or writes: the
client reads it from its own config file, and only the config file's path is reported.

Split: `aihub_client` (the client's configuration, errors and output), `aihub_journal` (job
ids on disk), `aihub_payload` (the profile dict in our schema, pure); this module is the
session that drives jobs.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.atomic import sha256_file, write_text_atomic
from ..core.errors import HubError, ProfileError, UsageError
from ..core.redact import scrub
from ..core.targets import Precision
from ..core.versions import parse_qnn_version, same_release, sdk_version_from_metadata, short_version
from ..htp.record import IoTensor
from ..measure.agreement import Agreement
from ..measure.schema import (
    ModelInfo,
    OutputCheck,
    Profile,
    Provenance,
    TargetInfo,
    ToolchainInfo,
)
from .aihub_client import (
    HubConfig,
    Progress,
    check_hub_config,
    client_errors,
    client_message,
    device_attributes,
    is_fatal,
    quiet,
    transient_errors,
)
from .aihub_journal import JobJournal, default_index_dir
from .aihub_payload import jsonable, onnx_sources, profile_from_hub, profile_stem
from .devices import DeviceTarget
from .emulator import onnx_node_tensors

log = logging.getLogger(__name__)

DEFAULT_RUNS = 100  # AI Hub's own default for --max_profiler_iterations
DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_POLL_S = 10.0  # the client's own polling interval
_MAX_TRANSIENT_POLL_ERRORS = 6
TRANSFER_ATTEMPTS = 3  # a failed upload or download is tried this often before it is reported





# --- inputs and results ----------------------------------------------------------------


@dataclass(frozen=True)
class HubTarget:
    """One model file to compile and profile with one QAIRT version."""

    model_path: Path
    model: ModelInfo
    # QAIRT version for --qairt_version. As built by the caller: what the user asked for (None:
    # AI Hub's default); `HubSession.run` resolves it against `get_frameworks()` first.
    qnn: str | None = None
    # The model part of labels and file names (`orchestrate.file_labels`: unique per command);
    # None: `<variant>-<precision>`.
    name: str | None = None
    requested: str | None = None  # set on resolution: what the user asked for (None: default)
    # --check-outputs (`exports.output_check_files`): held-out inputs (.npy, N x input shape) to run
    # on the device too; the fp32 reference, the export's outputs on them (`fp32_outputs`) or the
    # float graph to run (`fp32_model`); the CPU QDQ reference, the export's outputs
    # (`cpu_qdq_outputs`), else the QDQ graph (`cpu_qdq`, else `model_path`) is run.
    check_inputs: Path | None = None
    fp32_model: Path | None = None
    fp32_outputs: Path | None = None
    cpu_qdq_outputs: Path | None = None
    # `export --io uint8-nhwc`: `model_path` is the export's graph with native uint8 NHWC inputs and
    # outputs (what its own binary takes), `io` their recorded quantization, and `cpu_qdq` the float-I/O
    # QDQ graph the device's outputs are compared with; empty / None: float NCHW I/O.
    io: tuple[IoTensor, ...] = ()
    cpu_qdq: Path | None = None

    @property
    def precision(self) -> Precision:
        return Precision(self.model.precision)

    @property
    def model_label(self) -> str:
        return self.name or f"{self.model.variant}-{self.model.precision}"

    @property
    def label(self) -> str:
        return f"{self.model_label}-qnn{self.qnn or 'default'}"

    def compile_options(self) -> str:
        opts = ["--target_runtime", "qnn_context_binary"]
        if self.qnn:
            opts += ["--qairt_version", self.qnn]
        if not self.precision.is_quantized:
            # The float graph is uploaded; AI Hub runs it in the HTP's fp16 mode.
            opts += ["--quantize_full_type", self.precision.aihub_quantize_full_type]
        return " ".join(opts)

    def profile_options(self, runs: int) -> str:
        opts = ["--max_profiler_iterations", str(runs)]
        if self.qnn:
            # The runtime on the phone must be the QAIRT the binary was compiled with.
            opts += ["--qairt_version", self.qnn]
        return " ".join(opts)


@dataclass(frozen=True)
class HubOptions:
    runs: int = DEFAULT_RUNS
    timeout_s: float = DEFAULT_TIMEOUT_S  # for all jobs of one command together
    poll_s: float = DEFAULT_POLL_S
    new_jobs: bool = False  # ignore the journal: submit (and pay for) new jobs
    retry_failed: bool = False  # resubmit jobs the journal knows failed
    cache_index: bool = True  # also index job ids in the user cache (resume across output dirs)


@dataclass(frozen=True)
class HubProfileResult:
    target: HubTarget
    profile: Profile
    profile_path: Path
    raw_path: Path
    binary_path: Path | None
    resumed: dict[str, bool]  # {"compile": True, "profile": False}: found in the journal


@dataclass(frozen=True)
class HubJobFailure:
    label: str
    stage: str  # compile | profile | timeout | download | conversion
    reason: str
    job_id: str | None = None
    url: str | None = None
    resumable: bool = False  # rerunning the same command picks the job up again

    def one_line(self) -> str:
        where = f" ({self.job_id}: {self.url})" if self.job_id else ""
        return f"{self.label}: {self.stage} failed{where}: {self.reason}"


@dataclass
class HubRun:
    device: str
    results: list[HubProfileResult] = field(default_factory=list)
    failures: list[HubJobFailure] = field(default_factory=list)
    journal: Path | None = None


@dataclass
class _Track:
    target: HubTarget
    model_key: str
    hub_model: Any = None
    compile_key: str | None = None
    compile_job: Any = None
    profile_key: str | None = None
    profile_job: Any = None
    resumed: dict[str, bool] = field(default_factory=dict)
    poll_errors: int = 0
    last_state: str | None = None  # to report each state change of a job once
    stage: str = "upload"  # what it was doing, for a failure report
    check_key: str | None = None
    check_job: Any = None


class HubSession:
    """One command's conversation with AI Hub: submit everything, then wait for everything."""

    def __init__(
        self,
        out_dir: Path,
        options: HubOptions = HubOptions(),
        progress: Progress | None = None,
        *,
        config: HubConfig | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        import qai_hub

        self.config = config or check_hub_config()
        self.out_dir = Path(out_dir)
        self.options = options
        self.progress = progress or (lambda msg: None)
        self._sleep = sleep
        index = default_index_dir() if options.cache_index else None
        self.journal = JobJournal(self.out_dir, self.config.api_url, index)
        self._models: dict[str, Any] = {}
        self._device_record: Any = None  # AI Hub's Device for --device (name, os, attributes)
        self.client = qai_hub.Client()
        self.client_version = qai_hub.__version__
        self._call(lambda: self.client.set_verbose(False), "reading the client configuration")

    # -- plumbing --

    def _call(self, fn: Callable[[], Any], what: str, job_url: str | None = None) -> Any:
        """Run one client call; its failures become a HubError naming what we were doing. No
        call waits longer than --timeout: the client's own HTTP retries against a server that
        accepts and never answers took minutes (a device lookup, 244 s)."""
        try:
            with quiet(self.progress):
                return _bounded(fn, self.options.timeout_s)
        except _NoAnswer:
            raise HubError(f"Qualcomm AI Hub, {what}: no answer from {self.config.api_url} within "
                           f"--timeout {self.options.timeout_s:g} s.",
                           hint="Check the network and the server, or allow longer with --timeout; then rerun the "
                                f"same command{self._resumes()}.") from None
        except client_errors() as exc:
            where = f" ({job_url})" if job_url else ""
            hint = None
            if isinstance(exc, transient_errors()):
                hint = (
                    f"Check the network and {self.config.api_url} (the client already retried with backoff), "
                    f"then rerun the same command{self._resumes()}."
                )
            error = HubError(f"Qualcomm AI Hub, {what}{where}: {client_message(exc)}", hint=hint)
            error.fatal = is_fatal(exc)  # type: ignore[attr-defined]
            error.transient = isinstance(exc, transient_errors())  # type: ignore[attr-defined]
            raise error from None

    def _resumes(self) -> str:
        """What a rerun picks up: the journal's jobs, once there is a journal (a failure before
        the first job wrote none, and a hint naming it would send the user to a missing file)."""
        return f": it resumes the jobs saved in {self.journal.path}" if Path(self.journal.path).is_file() else ""

    def _transfer(self, fn: Callable[[], Any], what: str, job_url: str | None = None) -> Any:
        """A file transfer (upload or download, presigned or S3 credentials), retried a few
        times with backoff before it is reported: a dropped transfer is the usual case."""
        for attempt in range(1, TRANSFER_ATTEMPTS + 1):
            try:
                return self._call(fn, what, job_url)
            except HubError as exc:
                if not getattr(exc, "transient", False) or attempt == TRANSFER_ATTEMPTS:
                    raise  # a refused request (400, 413, ...) is not retried: it would be refused again
                wait = self.options.poll_s * 2 ** (attempt - 1)
                self.progress(f"{what} failed ({exc.message.split(': ', 1)[-1]}); retry {attempt + 1} of "
                              f"{TRANSFER_ATTEMPTS} in {wait:g} s")
                self._sleep(wait)
        raise AssertionError("unreachable")

    # -- versions --

    def resolve_qairt(self, requested: list[str | None]) -> dict[str | None, Any]:
        """Each requested QAIRT version (None: AI Hub's default; "latest"; "2.42") -> the
        `Framework` AI Hub offers for it, from `get_frameworks()`, before anything is uploaded.

        AI Hub offers a few versions at a time and retires old ones, and "default"/"latest"
        move; resolving here pins every job of this command (and the journal key) to one version.
        """
        frameworks = self._call(self.client.get_frameworks, "listing the QAIRT versions AI Hub offers")
        qairt = [f for f in frameworks if f.name.upper() in ("QAIRT", "QNN")]
        offered = ", ".join(f.api_version + (f" ({', '.join(f.api_tags)})" if f.api_tags else "") for f in qairt)
        out: dict[str | None, Any] = {}
        for want in requested:
            tag = (want or "default").strip().lower()
            if tag in ("default", "latest"):
                match = next((f for f in qairt if tag in f.api_tags), None)
            else:
                match = next((f for f in qairt if same_release(want, f.api_version)
                              or same_release(want, f.full_version)), None)
            if match is None:
                raise UsageError(
                    f"AI Hub ({self.config.api_url}) does not offer QAIRT {want or 'default'}.",
                    hint=f"It offers: {offered or 'none'}. Pick one of those with --qnn.",
                )
            out[want] = match
        return out

    # -- devices --

    def resolve_device(self, device: DeviceTarget) -> Any:
        """The one AI Hub device a name or chipset stands for (checked against `get_devices`)."""
        found = self._call(
            lambda: self.client.get_devices(name=device.name or "", attributes=list(device.attributes)),
            f"looking up the device {device.display_name!r}",
        )
        if not found:
            raise HubError(
                f"AI Hub offers no device {device.display_name!r} (from --device {device.query!r}).",
                hint="See the devices it offers with --device list.",
            )
        import qai_hub

        # Several OS versions of one phone come back as several entries. The job leaves `os`
        # empty, and AI Hub then runs on the newest, so that is the record kept.
        chosen = found[0]
        self._device_record = max((d for d in found if d.name == chosen.name), key=lambda d: _os_key(d.os))
        return qai_hub.Device(name=chosen.name, attributes=list(device.attributes) if not device.name else [])

    # -- submission --

    def _upload(self, track: _Track) -> None:
        path = track.target.model_path
        if track.model_key in self._models:
            track.hub_model = self._models[track.model_key]
            return
        entry = None if self.options.new_jobs else self.journal.lookup(track.model_key)
        if entry is not None:
            try:
                with quiet(self.progress):
                    track.hub_model = self.client.get_model(entry["id"])
                track.resumed["upload"] = True
                self.progress(f"{track.target.label}: reusing uploaded model {entry['id']}")
            except client_errors() as exc:
                log.info("uploaded model %s is gone (%s); uploading again", entry["id"], client_message(exc))
                self.journal.forget(track.model_key)
        if track.hub_model is None:
            self.progress(f"{track.target.label}: uploading {path.name} ({path.stat().st_size / 1e6:.1f} MB)")
            track.hub_model = self._transfer(
                lambda: self.client.upload_model(str(path), name=path.name), f"uploading {path}"
            )
            self.journal.record(
                track.model_key, kind="model", id=track.hub_model.model_id, label=track.target.label, file=str(path)
            )
        self._models[track.model_key] = track.hub_model

    def _resume_job(self, key: str, stage: str, track: _Track) -> Any | None:
        """The journal's job for `key`, or None when a new one must be submitted."""
        if self.options.new_jobs:
            return None
        entry = self.journal.lookup(key)
        if entry is None:
            return None
        try:
            with quiet(self.progress):
                job = self.client.get_job(entry["id"])
        except client_errors() as exc:
            if isinstance(exc, transient_errors()):
                raise HubError(
                    f"Qualcomm AI Hub, fetching the saved {stage} job {entry['id']}: {client_message(exc)}",
                    hint="Rerun the same command once AI Hub is reachable; no new job was submitted.",
                ) from None
            log.info("saved %s job %s is not available (%s); submitting a new one", stage, entry["id"], exc)
            self.journal.forget(key)
            return None
        if self.options.retry_failed and self._status(job, track) is not None and job.get_status().failure:
            self.progress(f"{track.target.label}: {stage} job {job.job_id} had failed; submitting it again (--retry-failed)")
            self.journal.forget(key)
            return None
        track.resumed[stage] = True
        self.progress(f"{track.target.label}: resuming {stage} job {job.job_id} {job.url}")
        return job

    def _submit_compile(self, track: _Track, device: Any) -> None:
        t = track.target
        opts = t.compile_options()
        track.compile_key = self.journal.key(
            "compile", model=sha256_file(t.model_path), device=device.name, attributes=list(device.attributes), options=opts
        )
        track.compile_job = self._resume_job(track.compile_key, "compile", track)
        if track.compile_job is not None:
            return
        track.stage = "upload"
        self._upload(track)
        track.stage = "compile submission"
        job = self._call(
            lambda: self.client.submit_compile_job(track.hub_model, device=device, name=t.label, options=opts),
            f"submitting the compile job for {t.label}",
        )
        track.compile_job = job
        self.journal.record(track.compile_key, kind="compile", id=job.job_id, url=job.url, label=t.label, options=opts)
        self.progress(f"{t.label}: compile job {job.job_id} submitted {job.url}")

    def _submit_profile(self, track: _Track, device: Any) -> None:
        t = track.target
        opts = t.profile_options(self.options.runs)
        track.profile_key = self.journal.key(
            "profile", compile_job=track.compile_job.job_id, device=device.name, options=opts
        )
        track.profile_job = self._resume_job(track.profile_key, "profile", track)
        if track.profile_job is not None:
            return
        target_model = self._call(
            track.compile_job.get_target_model, f"fetching the compiled model of {t.label}", track.compile_job.url
        )
        job = self._call(
            lambda: self.client.submit_inference_job(target_model, device=device, name=t.label, options=opts,
                                                     profile=True),
            f"submitting the profile job for {t.label}",
        )
        track.profile_job = job
        self.journal.record(track.profile_key, kind="profile", id=job.job_id, url=job.url, label=t.label, options=opts)
        self.progress(f"{t.label}: profile job {job.job_id} submitted {job.url}")

    def _submit_check(self, track: _Track, device: Any, target_model: Any = None) -> None:
        """--check-outputs: an inference job on the held-out inputs (no profiling), beside the profile job."""
        import numpy as np

        t = track.target
        opts = f"--qairt_version {t.qnn}"
        track.check_key = self.journal.key(
            "check", compile_job=track.compile_job.job_id, device=device.name, options=opts,
            inputs=sha256_file(t.check_inputs),
        )
        track.check_job = self._resume_job(track.check_key, "output check", track)
        if track.check_job is not None:
            return
        target_model = target_model or self._call(
            track.compile_job.get_target_model, f"fetching the compiled model of {t.label}", track.compile_job.url
        )
        x = np.load(t.check_inputs).astype(np.float32)
        name = _input_name(t.model_path)
        feed = next((io for io in t.io if io.role == "input"), None)
        # The binary's own input: float NCHW, or with native I/O uint8 NHWC at the recorded scale.
        inputs = {name: [x[i : i + 1] if feed is None else feed.from_float(x[i : i + 1]) for i in range(x.shape[0])]}
        job = self._transfer(
            # profile=False: a plain run (the client's default in 0.56 is to profile every inference job).
            lambda: self.client.submit_inference_job(target_model, device=device, inputs=inputs,
                                                     name=f"{t.label} outputs", options=opts, profile=False),
            f"submitting the output check of {t.label} ({x.shape[0]} held-out inputs)",
        )
        track.check_job = job
        self.journal.record(track.check_key, kind="check", id=job.job_id, url=job.url, label=t.label, options=opts)
        self.progress(f"{t.label}: output-check job {job.job_id} submitted {job.url}")

    # -- waiting --

    def _status(self, job: Any, track: _Track) -> Any | None:
        """The job's status, or None after a transient failure (the job keeps running on AI Hub)."""
        try:
            with quiet(self.progress):
                status = job.get_status()
            track.poll_errors = 0
            state = f"{job.job_id}:{status.code}"
            if state != track.last_state and not status.finished:
                stage = {id(track.profile_job): "profile", id(track.check_job): "output-check"}.get(id(job), "compile")
                self.progress(f"{track.target.label}: {stage} job {job.job_id} {status.code.lower().replace('_', ' ')}")
            track.last_state = state
            return status
        except transient_errors() as exc:
            track.poll_errors += 1
            log.warning("polling %s failed (%d in a row): %s", job.job_id, track.poll_errors, client_message(exc))
            if track.poll_errors >= _MAX_TRANSIENT_POLL_ERRORS:
                raise HubError(
                    f"Lost Qualcomm AI Hub while waiting for job {job.job_id} ({job.url}): {client_message(exc)}",
                    hint=f"The job keeps running on AI Hub; rerun the same command to resume it (ids in {self.journal.path}).",
                ) from None
            return None
        except client_errors() as exc:
            raise HubError(f"Qualcomm AI Hub, status of job {job.job_id} ({job.url}): {client_message(exc)}") from None

    def _settle(self, track: _Track, job: Any, key: str, stage: str, run: HubRun) -> str:
        """Where one of a target's jobs stands: "running", or once AI Hub says it finished (then
        journaled) "done", or "failed" (reported in `run`)."""
        status = self._status(job, track)
        if status is None or not status.finished:
            return "running"
        self.journal.update(key, state=status.code)
        if status.failure:
            run.failures.append(_job_failure(track.target.label, stage, status, job))
            return "failed"
        return "done"

    def run(self, targets: list[HubTarget], device: DeviceTarget) -> HubRun:
        hub_device = self.resolve_device(device)
        resolved = self.resolve_qairt(list(dict.fromkeys(t.qnn for t in targets)))
        for want, fw in resolved.items():
            if want is None or want.lower() in ("default", "latest"):
                self.progress(f"QAIRT {want or 'default'} on AI Hub is {fw.api_version} ({fw.full_version})")
        targets = [replace(t, qnn=resolved[t.qnn].api_version, requested=t.qnn) for t in targets]
        run = HubRun(device=hub_device.name or device.display_name, journal=self.journal.path)
        tracks = [
            _Track(t, self.journal.key("model", sha256=sha256_file(t.model_path))) for t in targets
        ]
        # Submit every compile job first: AI Hub runs them in parallel while we wait. A target
        # whose upload or submission fails is reported; the others go on.
        pending = []
        for track in tracks:
            try:
                self._submit_compile(track, hub_device)
                pending.append(track)
            except HubError as exc:
                if getattr(exc, "fatal", False):
                    raise
                run.failures.append(HubJobFailure(track.target.label, track.stage, exc.message,
                                                  resumable=track.stage == "upload"))

        deadline = time.monotonic() + self.options.timeout_s
        while pending:
            for track in list(pending):
                if self._advance(track, hub_device, run):
                    pending.remove(track)
            if not pending:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for track in pending:
                    job = track.profile_job or track.compile_job
                    stage = "profile" if track.profile_job else "compile"
                    run.failures.append(
                        HubJobFailure(
                            track.target.label,
                            "timeout",
                            f"the {stage} job was still running after {self.options.timeout_s:g} s; "
                            "rerun the same command to resume it (no new job will be submitted)",
                            job.job_id,
                            job.url,
                            resumable=True,
                        )
                    )
                break
            backoff = 2 ** min(max((t.poll_errors for t in pending), default=0), 4)
            self._sleep(min(self.options.poll_s * backoff, max(remaining, 0.0)))
        return run

    def _advance(self, track: _Track, device: Any, run: HubRun) -> bool:
        """One polling step for one target; True when it is finished (profiled or failed)."""
        t = track.target
        if track.profile_job is None:
            state = self._settle(track, track.compile_job, track.compile_key, "compile", run)
            if state != "done":
                return state == "failed"
            self.progress(f"{t.label}: compiled ({track.compile_job.job_id})")
            try:
                self._submit_profile(track, device)
                if t.check_inputs is not None:
                    self._submit_check(track, device)
            except HubError as exc:
                if getattr(exc, "fatal", False):
                    raise
                job = track.compile_job
                run.failures.append(HubJobFailure(t.label, "profile submission", exc.message, job.job_id, job.url))
                return True
        state = self._settle(track, track.profile_job, track.profile_key, "profile", run)
        if state != "done":
            return state == "failed"
        if track.check_job is not None:
            state = self._settle(track, track.check_job, track.check_key, "output check", run)
            if state == "running":
                return False
            if state == "failed":  # the profile stands; the output check is reported as failed
                track.check_job = None
        try:
            run.results.append(self._collect(track, device))
        except HubError as exc:  # the jobs are done and journaled: a rerun downloads again
            run.failures.append(
                HubJobFailure(t.label, "download", exc.one_line(), track.profile_job.job_id, track.profile_job.url, resumable=True)
            )
        except ProfileError as exc:  # the raw payload is on disk; our conversion refused it
            run.failures.append(
                HubJobFailure(t.label, "conversion", exc.one_line(), track.profile_job.job_id, track.profile_job.url)
            )
        return True

    # -- results --

    def _collect(self, track: _Track, device: Any) -> HubProfileResult:
        t, cj, pj = track.target, track.compile_job, track.profile_job
        payload, ran_with = self._profile_payload(pj, t.label)
        if not payload:
            raise ProfileError(f"AI Hub returned an empty profile for {t.label}.")
        target_model = self._call(cj.get_target_model, f"fetching the compiled model of {t.label}", cj.url)
        metadata = self._call(lambda: target_model.metadata, f"reading the compiled model's metadata ({t.label})", cj.url)
        compiled_with = sdk_version_from_metadata(metadata)
        if ran_with and compiled_with and (parse_qnn_version(ran_with) or parse_qnn_version(compiled_with)) and \
                short_version(ran_with) != short_version(compiled_with):
            self.progress(f"{t.label}: compiled with QAIRT {compiled_with}, ran with {ran_with} (recorded)")
        # Files are named after the resolved version, which also keys the journal.
        stem = profile_stem(t.model_label, t.qnn or "default", device.name or "device")

        self.out_dir.mkdir(parents=True, exist_ok=True)
        raw_path = self.out_dir / f"{stem}.raw.json"
        write_text_atomic(raw_path, json.dumps(jsonable(payload), indent=2) + "\n")
        binary = self._download_binary(cj, stem, t.label)
        profile = profile_from_hub(
            payload,
            model=t.model,
            target=self._target_info(device),
            toolchain=ToolchainInfo(
                qnn_version=short_version(ran_with) or short_version(compiled_with) or t.qnn,
                qairt_version=ran_with or compiled_with,
                runtime="qnn_context_binary",
                requested=t.requested or "default",
                compiled_with=compiled_with,
                ran_with=ran_with,
            ),
            provenance=Provenance(
                job_ids={"compile": cj.job_id, "profile": pj.job_id},
                urls={"compile": cj.url, "profile": pj.url},
                tool=f"swiftformer-qnn {_own_version()} (qai-hub {self.client_version})",
                note=f"compile options: {t.compile_options()}; profile options: {t.profile_options(self.options.runs)}"
                     + ("; native uint8 NHWC I/O: the uploaded ONNX takes and gives the quantized tensors" if t.io else ""),
            ),
            sources=onnx_sources(t.model_path),
            graph=onnx_node_tensors(t.model_path),
        )
        if track.check_job is not None:
            profile = profile.model_copy(update={"output_check": self._output_check(track)})
        profile_path = profile.save(self.out_dir / f"{stem}.profile.json")
        lat = profile.latency
        self.progress(f"{t.label}: profiled on {profile.target.device}: {lat.median_us:.1f} us ({lat.label()}, AI Hub)")
        return HubProfileResult(
            target=t,
            profile=profile,
            profile_path=profile_path,
            raw_path=raw_path,
            binary_path=Path(binary) if binary else None,
            resumed=dict(track.resumed),
        )

    def _download_binary(self, compile_job: Any, stem: str, label: str) -> Path | None:
        """The compiled context binary as `<stem>.bin`. The client names a download after
        AI Hub's file name (and appends that name's suffixes to a file path it is given), so
        it downloads into a scratch folder and the file is renamed from there."""
        import shutil
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=self.out_dir))
        try:
            got = self._transfer(
                lambda: compile_job.download_target_model(str(scratch)),
                f"downloading the context binary of {label}",
                compile_job.url,
            )
            if not got:
                return None
            final = self.out_dir / f"{stem}{Path(got).suffix or '.bin'}"
            Path(got).replace(final)
            return final
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _output_check(self, track: _Track) -> OutputCheck:
        """The device's outputs on the held-out inputs against the CPU QDQ and fp32 graphs."""
        import numpy as np

        from ..measure.agreement import compare_outputs, run_cpu

        t, job = track.target, track.check_job
        got = self._transfer(job.download_output_data, f"downloading the device outputs of {t.label}", job.url)
        if not got:
            raise ProfileError(f"AI Hub returned no outputs for the output check of {t.label} ({job.url}).")
        out = next((io for io in t.io if io.role == "output"), None)
        device = np.concatenate([np.asarray(a) if out is None else out.to_float(np.asarray(a))
                                 for a in next(iter(got.values()))]).astype(np.float32)
        x = np.load(t.check_inputs).astype(np.float32)
        classify = t.model.variant != "encoder"

        def agree(saved: Path | None, reference_model: Path, stage: str) -> tuple[Agreement, str]:
            if saved is not None:
                ref, source = np.load(saved), f"{saved.name}, the export's {stage} outputs"
            else:
                ref, source = run_cpu(reference_model, x), f"{reference_model.name} on onnxruntime's CPU EP"
            return Agreement(**compare_outputs(ref, device.reshape(ref.shape), classify=classify)), source

        vs_qdq, qdq_source = (agree(t.cpu_qdq_outputs, t.cpu_qdq or t.model_path, "cpu_qdq")
                              if t.precision.is_quantized else (None, None))
        vs_fp32, fp32_source = agree(t.fp32_outputs, t.fp32_model or t.model_path, "validate")
        check = OutputCheck(
            inputs=f"{t.check_inputs.name} ({x.shape[0]} held-out input{'s' * (x.shape[0] != 1)})",
            job_id=job.job_id, vs_cpu_qdq=vs_qdq, vs_fp32=vs_fp32, cpu_qdq_reference=qdq_source,
            fp32_reference=fp32_source,
        )
        self.progress(f"{t.label}: device outputs vs CPU QDQ {_db(check.vs_cpu_qdq)}, vs fp32 {_db(check.vs_fp32)} "
                      f"SQNR over {x.shape[0]} held-out input(s)")
        return check

    def _profile_payload(self, job: Any, label: str) -> tuple[dict[str, Any], str | None]:
        """The profile dict `download_profile()` returns, and the QAIRT version the device ran.

        Both come from one job-results call (the client's `download_profile` makes the same call
        and keeps only the dict); the version is `ProfileDetail.tool_versions`, as Qualcomm's
        model zoo reads it."""
        from qai_hub import public_rest_api
        from qai_hub.client import _profile_pb_to_python_dict

        result = self._call(
            lambda: self.client._api_call(public_rest_api.get_job_results, job.job_id),
            f"downloading the profile of {label}",
            job.url,
        )
        if not result.inference_job_result.HasField("detail"):
            return {}, None
        detail = result.inference_job_result.detail
        tools = {tv.name.strip().upper(): tv.version for tv in detail.tool_versions}
        return _profile_pb_to_python_dict(detail), tools.get("QAIRT") or tools.get("QNN")

    def _target_info(self, device: Any) -> TargetInfo:
        """The device as AI Hub describes it: chipset, soc model and Hexagon version from its
        attributes (`chipset:...`, `soc-model:43`, `hexagon:v73`), not from a table of ours."""
        dev = self._device_record or device
        attrs = device_attributes(dev.attributes)
        return TargetInfo(device=device.name or dev.name, chipset=attrs["chipset"], soc_model=attrs["soc_model"],
                          htp_arch=attrs["htp_arch"], os=dev.os or None)


class _NoAnswer(Exception):
    pass


def _bounded(fn: Callable[[], Any], seconds: float) -> Any:
    """`fn()`, given at most `seconds`: run in a daemon thread (a blocked socket read cannot be
    interrupted otherwise) that is abandoned, not joined, when the time is up. The wait itself
    stays interruptible by Ctrl-C and SIGTERM."""
    done = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001  (handed to the caller's thread)
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="aihub-call", daemon=True).start()
    if not done.wait(seconds):
        raise _NoAnswer
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _db(agreement: Agreement | None) -> str:
    if agreement is None:
        return "n/a"
    return "identical" if agreement.exact else (f"{agreement.sqnr_db:.1f} dB" if agreement.sqnr_db is not None else "undefined")


def _input_name(model_path: Path) -> str:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return next(i.name for i in graph.input if i.name not in initializers)


def _os_key(os_version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", os_version or ""))


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("swiftformer-qnn")
    except PackageNotFoundError:
        return "unknown"


def _job_failure(label: str, stage: str, status: Any, job: Any) -> HubJobFailure:
    """A job AI Hub reports as failed, with its URL so the user can read why."""
    return HubJobFailure(label, stage, scrub(status.message or "no reason given"), job.job_id, job.url)
