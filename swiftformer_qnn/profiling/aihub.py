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
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._atomic import write_text_atomic
from ..artifacts import cache_root, sha256_file, sha256_json
from ..errors import HubError, ProfileError
from ..targets import SOCS, Precision
from ..toolchains import short_version
from .attribution import NodeTensors, attribute_ops
from .devices import DeviceTarget, device_slug
from .schema import (
    ComputeUnit,
    LatencySource,
    LatencySummary,
    LoadInfo,
    ModelInfo,
    OpRecord,
    Profile,
    Provenance,
    TargetInfo,
    TimeUnit,
    ToolchainInfo,
)

log = logging.getLogger(__name__)

JOURNAL_NAME = "aihub-jobs.json"
JOURNAL_KIND = "swiftformer-qnn.aihub-jobs"
DEFAULT_RUNS = 100  # AI Hub's own default for --max_profiler_iterations
DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_POLL_S = 10.0  # the client's own polling interval
_MAX_TRANSIENT_POLL_ERRORS = 6

Progress = Callable[[str], None]

CONFIGURE_HINT = (
    "Get a token from your Qualcomm AI Hub account page (https://aihub.qualcomm.com), run "
    "`qai-hub configure --api_token <YOUR_TOKEN>` (or point QAIHUB_CLIENT_INI at a client.ini), "
    "then rerun. Without a token, profile locally with --device emulator (cycles, not device latency)."
)


# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class HubConfig:
    """Where the client's configuration is; deliberately without the token."""

    path: Path
    api_url: str
    web_url: str


def check_hub_config() -> HubConfig:
    """Fail early, before any export or upload, when the client has no usable token.

    Reads the same file the client reads (`QAIHUB_CLIENT_INI`, else `~/.qai_hub/client.ini`)
    with the client's own loader, so what passes here is what the client will accept.
    """
    from qai_hub import api_utils
    from qai_hub.public_rest_api import APIException

    path = Path(api_utils.get_config_path(expanduser=True))
    try:
        config = api_utils.load_api_config_from_file(str(path))
    except FileNotFoundError:
        raise HubError(f"No Qualcomm AI Hub API token: {path} does not exist.", hint=CONFIGURE_HINT) from None
    except APIException:
        raise HubError(
            f"No Qualcomm AI Hub API token: {path} lacks api_token, api_url or web_url in its [api] section.",
            hint=CONFIGURE_HINT,
        ) from None
    except Exception as exc:  # configparser errors: a file the client cannot read either
        raise HubError(
            f"Cannot read the Qualcomm AI Hub client config {path} ({type(exc).__name__}).", hint=CONFIGURE_HINT
        ) from None
    if not config.api_token.strip():
        raise HubError(f"No Qualcomm AI Hub API token: api_token in {path} is empty.", hint=CONFIGURE_HINT)
    return HubConfig(path=path, api_url=config.api_url, web_url=config.web_url)


# --- inputs and results ----------------------------------------------------------------


@dataclass(frozen=True)
class HubTarget:
    """One model file to compile and profile with one QAIRT version."""

    model_path: Path
    model: ModelInfo
    qnn: str | None = None  # QAIRT version for --qairt_version; None: AI Hub's default
    # The model part of labels and file names (`orchestrate.file_labels`: unique per command);
    # None: `<variant>-<precision>`.
    name: str | None = None

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


# --- the job journal --------------------------------------------------------------------


class JobJournal:
    """Ids of uploaded models and submitted jobs, on disk as soon as they exist.

    `<out>/aihub-jobs.json` is the record for that run. With an index directory, each
    entry is also written to `<index>/<key>.json` so a later run with another output
    directory finds it. Every write is atomic (temp file + rename).
    """

    def __init__(self, out_dir: Path, api_url: str, index_dir: Path | None = None):
        self.path = Path(out_dir) / JOURNAL_NAME
        self.api_url = api_url
        self.index_dir = index_dir
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("kind") == JOURNAL_KIND:
                    self.entries = dict(data.get("entries", {}))
            except (OSError, ValueError):
                log.warning("ignoring unreadable job journal %s", self.path)

    def key(self, kind: str, **fields: Any) -> str:
        # The AI Hub URL is part of the key: ids from one deployment mean nothing to another.
        return f"{kind}-{sha256_json({'api_url': self.api_url, 'kind': kind, **fields})[:24]}"

    def lookup(self, key: str) -> dict[str, Any] | None:
        if key in self.entries:
            return self.entries[key]
        if self.index_dir is not None:
            p = self.index_dir / f"{key}.json"
            if p.is_file():
                try:
                    entry = json.loads(p.read_text())
                except (OSError, ValueError):
                    return None
                self.entries[key] = entry
                self._write()
                return entry
        return None

    def record(self, key: str, **entry: Any) -> dict[str, Any]:
        entry = {**entry, "recorded_at": datetime.now(timezone.utc).isoformat()}
        self.entries[key] = entry
        self._write()
        if self.index_dir is not None:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.index_dir / f"{key}.json", json.dumps(entry, indent=2) + "\n")
        return entry

    def update(self, key: str, **changes: Any) -> None:
        if key in self.entries:
            self.record(key, **{**self.entries[key], **changes})

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)
        self._write()
        if self.index_dir is not None:
            (self.index_dir / f"{key}.json").unlink(missing_ok=True)

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"kind": JOURNAL_KIND, "api_url": self.api_url, "entries": self.entries}
        write_text_atomic(self.path, json.dumps(body, indent=2, sort_keys=True) + "\n")


def default_index_dir() -> Path:
    return cache_root() / "aihub-jobs"


# --- conversion of the client's profile dict ------------------------------------------------


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def latency_from_summary(summary: dict[str, Any]) -> tuple[LatencySummary, str | None]:
    """Whole-model inference time from `execution_summary` (microseconds).

    Newer AI Hub profiles carry every run (`all_inference_times`); older ones only the
    `estimated_inference_time`, which then stands for min and median of one reported value.
    """
    runs = [float(t) for t in (summary.get("all_inference_times") or []) if _num(t) is not None]
    estimate = _num(summary.get("estimated_inference_time"))
    if runs:
        note = f"AI Hub estimated_inference_time {estimate:g} us" if estimate is not None else None
        return (
            LatencySummary(
                min_us=min(runs), median_us=statistics.median(runs), max_us=max(runs), runs_us=runs, run_count=len(runs)
            ),
            note,
        )
    if estimate is None:
        raise ProfileError("AI Hub's profile has no inference time (no estimated_inference_time, no all_inference_times).")
    return (
        LatencySummary(min_us=estimate, median_us=estimate, run_count=1),
        "AI Hub reported only estimated_inference_time (no per-run times): min and median are that one value",
    )


def load_from_summary(summary: dict[str, Any]) -> LoadInfo:
    peaks = [
        int(v)
        for k in ("first_load_peak_memory", "warm_load_peak_memory", "estimated_inference_peak_memory")
        if (v := _num(summary.get(k))) is not None
    ]
    inference_peak = _num(summary.get("estimated_inference_peak_memory"))
    return LoadInfo(
        first_load_us=_num(summary.get("first_load_time")),
        warm_load_us=_num(summary.get("warm_load_time")),
        peak_memory_bytes=max(peaks) if peaks else None,
        inference_peak_memory_bytes=int(inference_peak) if inference_peak is not None else None,
    )


def qnn_op_name(onnx_node: str) -> str:
    """The name QNN's ONNX converter gives the op made from an ONNX node, as AI Hub's
    per-layer profile shows it: only [A-Za-z0-9_] survive (`/stage2/block9_.../MatMul`
    -> `_stage2_block9_..._MatMul`)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", onnx_node)
    return f"_{name}" if name[:1].isdigit() else name


def onnx_sources(model_path: Path) -> dict[str, list[str]]:
    """For each op name AI Hub can report for this uploaded graph, the ONNX nodes it stands for.

    AI Hub's profile names ops but, unlike the emulator's op trace, not the ONNX nodes they
    came from. The uploaded graph tells: a QDQ compute node becomes one HTP op together with
    the DequantizeLinear nodes of its inputs (its parameters, the activations it reads) and
    the QuantizeLinear of its output. Nodes that lost their module path in graph rewrites
    (`Gemm_1`, `LpNormalization_fused_ReduceL2_0`) are attributed through those. Names two
    nodes would share are left out rather than guessed.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: dict[str, list[str]] = {}
    clashes: set[str] = set()
    for i, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{i}"
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            sources = [name]
        else:
            sources = [name]
            sources += [producer[x].name for x in node.input if x in producer and producer[x].op_type == "DequantizeLinear"]
            sources += [c.name for o in node.output for c in consumers.get(o, []) if c.op_type == "QuantizeLinear"]
        key = qnn_op_name(name)
        if key in out:
            clashes.add(key)
        out[key] = sources
    for key in clashes:
        del out[key]
    return out


def ops_from_detail(detail: list[dict[str, Any]], sources: dict[str, list[str]] | None = None) -> list[OpRecord]:
    """`execution_detail` layers -> OpRecords (not yet attributed).

    Times are microseconds (`execution_time`). Only when no layer has one are the
    device's `execution_cycles` used, so one profile never mixes units. `sources` (from
    `onnx_sources`) fills each op's `onnx_nodes` where its name matches the uploaded graph.
    """
    sources = sources or {}
    use_cycles = not any(_num(d.get("execution_time")) is not None for d in detail) and any(
        _num(d.get("execution_cycles")) is not None for d in detail
    )
    unit = TimeUnit.CYCLES if use_cycles else TimeUnit.US
    ops = []
    for d in detail:
        cu = str(d.get("compute_unit") or "")
        name = str(d.get("name", ""))
        ops.append(
            OpRecord(
                name=name,
                op_type=str(d.get("type", "")),
                compute_unit=ComputeUnit(cu) if cu in ComputeUnit._value2member_map_ else None,
                time=_num(d.get("execution_cycles" if use_cycles else "execution_time")),
                time_unit=unit,
                onnx_nodes=list(sources.get(name, [])),
            )
        )
    return ops


def profile_from_hub(
    payload: dict[str, Any],
    *,
    model: ModelInfo,
    target: TargetInfo,
    toolchain: ToolchainInfo,
    provenance: Provenance,
    sources: dict[str, list[str]] | None = None,
    graph: Mapping[str, NodeTensors] | None = None,
) -> Profile:
    """The dict `InferenceJob.download_profile()` returns, in our schema, ops attributed to blocks
    (by name, and through `sources` where given: see `onnx_sources`). `graph` (the uploaded
    model's nodes and their tensors, `emulator.onnx_node_tensors`) places nodes whose names lost
    their module path by the tensors they read and write: in a float (fp16) graph no Q/DQ node
    carries those names."""
    from ..variants import get_variant

    if not isinstance(payload, dict) or "execution_summary" not in payload:
        raise ProfileError("AI Hub returned no profile (the job produced no execution_summary).")
    latency, note = latency_from_summary(payload["execution_summary"] or {})
    ops = attribute_ops(ops_from_detail(payload.get("execution_detail") or [], sources), get_variant(model.variant),
                        graph=graph)
    if note:
        provenance = provenance.model_copy(update={"note": "; ".join(filter(None, [provenance.note, note]))})
    return Profile(
        source=LatencySource.AIHUB,
        model=model,
        target=target,
        toolchain=toolchain,
        latency=latency,
        load=load_from_summary(payload["execution_summary"] or {}),
        ops=ops,
        provenance=provenance,
    )


def _jsonable(value: Any) -> Any:
    """The client's dict holds tuples (memory ranges); JSON wants lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def profile_stem(model: str, qnn: str, device: str) -> str:
    """`<model>-qnn<version>-<device slug>`; `model` is `<variant>-<precision>` or a
    `file_labels` name that tells apart exports of one variant and precision."""
    return f"{model}-qnn{qnn}-{device_slug(device)}"


# --- talking to AI Hub ---------------------------------------------------------------------


def _client_message(exc: BaseException) -> str:
    """The client's messages come in ASCII boxes over several lines; make them one line."""
    text = re.sub(r"[┌┐└┘─│|]+", " ", str(exc))
    return re.sub(r"\s+", " ", text).strip() or type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The client prints (e.g. "Downloaded model to ..."); a library must not, so its
    stdout goes to our debug log instead."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        for line in buf.getvalue().splitlines():
            if line.strip():
                log.debug("qai_hub: %s", line.strip())


def _transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    from qai_hub.client import InternalError, RateLimitedError

    return (InternalError, RateLimitedError, requests.RequestException, ConnectionError, TimeoutError)


def _client_errors() -> tuple[type[BaseException], ...]:
    from qai_hub.client import Error
    from qai_hub.public_rest_api import APIException

    return (Error, APIException, ValueError, *_transient_errors())


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
        """Run one client call; its failures become a HubError naming what we were doing."""
        try:
            with _quiet():
                return fn()
        except _client_errors() as exc:
            where = f" ({job_url})" if job_url else ""
            hint = None
            if isinstance(exc, _transient_errors()):
                hint = (
                    f"Check the network and {self.config.api_url} (the client already retried with backoff), "
                    f"then rerun the same command: it resumes the jobs saved in {self.journal.path}."
                )
            raise HubError(f"Qualcomm AI Hub, {what}{where}: {_client_message(exc)}", hint=hint) from None

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
                with _quiet():
                    track.hub_model = self.client.get_model(entry["id"])
                track.resumed["upload"] = True
                self.progress(f"{track.target.label}: reusing uploaded model {entry['id']}")
            except _client_errors() as exc:
                log.info("uploaded model %s is gone (%s); uploading again", entry["id"], _client_message(exc))
                self.journal.forget(track.model_key)
        if track.hub_model is None:
            self.progress(f"{track.target.label}: uploading {path.name} ({path.stat().st_size / 1e6:.1f} MB)")
            track.hub_model = self._call(
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
            with _quiet():
                job = self.client.get_job(entry["id"])
        except _client_errors() as exc:
            if isinstance(exc, _transient_errors()):
                raise HubError(
                    f"Qualcomm AI Hub, fetching the saved {stage} job {entry['id']}: {_client_message(exc)}",
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
        self._upload(track)
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

    # -- waiting --

    def _status(self, job: Any, track: _Track) -> Any | None:
        """The job's status, or None after a transient failure (the job keeps running on AI Hub)."""
        try:
            with _quiet():
                status = job.get_status()
            track.poll_errors = 0
            state = f"{job.job_id}:{status.code}"
            if state != track.last_state and not status.finished:
                stage = "profile" if job is track.profile_job else "compile"
                self.progress(f"{track.target.label}: {stage} job {job.job_id} {status.code.lower().replace('_', ' ')}")
            track.last_state = state
            return status
        except _transient_errors() as exc:
            track.poll_errors += 1
            log.warning("polling %s failed (%d in a row): %s", job.job_id, track.poll_errors, _client_message(exc))
            if track.poll_errors >= _MAX_TRANSIENT_POLL_ERRORS:
                raise HubError(
                    f"Lost Qualcomm AI Hub while waiting for job {job.job_id} ({job.url}): {_client_message(exc)}",
                    hint=f"The job keeps running on AI Hub; rerun the same command to resume it (ids in {self.journal.path}).",
                ) from None
            return None
        except _client_errors() as exc:
            raise HubError(f"Qualcomm AI Hub, status of job {job.job_id} ({job.url}): {_client_message(exc)}") from None

    def run(self, targets: list[HubTarget], device: DeviceTarget) -> HubRun:
        hub_device = self.resolve_device(device)
        run = HubRun(device=hub_device.name or device.display_name, journal=self.journal.path)
        tracks = [
            _Track(t, self.journal.key("model", sha256=sha256_file(t.model_path))) for t in targets
        ]
        # Submit every compile job first: AI Hub runs them in parallel while we wait.
        for track in tracks:
            self._submit_compile(track, hub_device)

        deadline = time.monotonic() + self.options.timeout_s
        pending = list(tracks)
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
            status = self._status(track.compile_job, track)
            if status is None or not status.finished:
                return False
            self.journal.update(track.compile_key, state=status.code)
            if status.failure:
                run.failures.append(_job_failure(t.label, "compile", status, track.compile_job))
                return True
            self.progress(f"{t.label}: compiled ({track.compile_job.job_id})")
            self._submit_profile(track, device)
        status = self._status(track.profile_job, track)
        if status is None or not status.finished:
            return False
        self.journal.update(track.profile_key, state=status.code)
        if status.failure:
            run.failures.append(_job_failure(t.label, "profile", status, track.profile_job))
            return True
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
        from .emulator import onnx_node_tensors  # loads onnx and the QNN helpers: only when needed

        t, cj, pj = track.target, track.compile_job, track.profile_job
        payload = self._call(pj.download_profile, f"downloading the profile of {t.label}", pj.url)
        if not payload:
            raise ProfileError(f"AI Hub returned an empty profile for {t.label}.")
        target_model = self._call(cj.get_target_model, f"fetching the compiled model of {t.label}", cj.url)
        metadata = self._call(lambda: target_model.metadata, f"reading the compiled model's metadata ({t.label})", cj.url)
        versions = {getattr(k, "name", str(k)): v for k, v in (metadata or {}).items()}
        qairt = versions.get("QAIRT_SDK_VERSION") or versions.get("QNN_SDK_VERSION")
        # A pinned version names the file as asked; "default"/"latest" name the one AI Hub used.
        pinned = t.qnn if t.qnn not in (None, "default", "latest") else None
        qnn_label = pinned or short_version(qairt) or t.qnn or "default"
        stem = profile_stem(t.model_label, qnn_label, device.name or "device")

        self.out_dir.mkdir(parents=True, exist_ok=True)
        raw_path = self.out_dir / f"{stem}.raw.json"
        write_text_atomic(raw_path, json.dumps(_jsonable(payload), indent=2) + "\n")
        binary = self._download_binary(cj, stem, t.label)
        hub_device = self._device_info(device)
        soc = next((s for s in SOCS.values() if s.aihub_chipset and s.aihub_chipset == hub_device["chipset"]), None)
        profile = profile_from_hub(
            payload,
            model=t.model,
            target=TargetInfo(
                device=device.name or hub_device["name"],
                chipset=hub_device["chipset"],
                soc_model=soc.soc_model if soc else None,
                htp_arch=soc.htp_arch if soc else None,
                os=hub_device["os"],
            ),
            toolchain=ToolchainInfo(
                qnn_version=versions.get("QNN_SDK_VERSION") or t.qnn,
                qairt_version=versions.get("QAIRT_SDK_VERSION") or t.qnn,
                runtime="qnn_context_binary",
            ),
            provenance=Provenance(
                job_ids={"compile": cj.job_id, "profile": pj.job_id},
                urls={"compile": cj.url, "profile": pj.url},
                tool=f"swiftformer-qnn {_own_version()} (qai-hub {self.client_version})",
                note=f"compile options: {t.compile_options()}; profile options: {t.profile_options(self.options.runs)}",
            ),
            sources=onnx_sources(t.model_path),
            graph=onnx_node_tensors(t.model_path),
        )
        profile_path = profile.save(self.out_dir / f"{stem}.profile.json")
        self.progress(f"{t.label}: profiled on {profile.target.device}: {profile.latency.median_us:.1f} us median (AI Hub)")
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
            got = self._call(
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

    def _device_info(self, device: Any) -> dict[str, str | None]:
        """Name, OS and chipset of the device, from AI Hub's own record of it."""
        dev = self._device_record or device
        chipset = next((a.split(":", 1)[1] for a in dev.attributes if a.startswith("chipset:")), None)
        return {"name": dev.name, "os": dev.os or None, "chipset": chipset}


def _os_key(os_version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", os_version or ""))


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("swiftformer-qnn")
    except PackageNotFoundError:
        return "unknown"


def list_devices(config: HubConfig | None = None) -> list[dict[str, Any]]:
    """AI Hub's devices (`get_devices()`), as plain dicts: name, os, chipset, attributes."""
    import qai_hub

    cfg = config or check_hub_config()
    client = qai_hub.Client()
    try:
        with _quiet():
            client.set_verbose(False)
            devices = client.get_devices()
    except _client_errors() as exc:
        raise HubError(f"Qualcomm AI Hub ({cfg.api_url}), listing devices: {_client_message(exc)}") from None
    out = []
    for d in devices:
        chipset = next((a.split(":", 1)[1] for a in d.attributes if a.startswith("chipset:")), None)
        out.append({"name": d.name, "os": d.os, "chipset": chipset, "attributes": list(d.attributes)})
    return out


def _job_failure(label: str, stage: str, status: Any, job: Any) -> HubJobFailure:
    """A job AI Hub reports as failed, with its URL so the user can read why."""
    return HubJobFailure(label, stage, status.message or "no reason given", job.job_id, job.url)
