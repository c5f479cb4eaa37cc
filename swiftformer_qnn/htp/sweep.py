"""Compile one QDQ model with several QNN versions side by side and compare what they made.

Each QNN version lives in its own toolchain environment (`swiftformer_qnn.toolchains`), so
each compile is a worker subprocess (`swiftformer_qnn.htp.worker`), run in parallel up to
the core count. Every version's result goes through the stage cache keyed by (model, input,
target, toolchain, worker code), so a rerun only compiles what changed. A version that fails
(an op it rejects, a crash) is reported for that version; the others still finish.

Each version's `qnn-<version>/compile.json` is the same `CompileRecord` an export's compile
writes (one compile, op trace included), and the one source of what the version built: context
binary size, HTP op count and types, and the HTP op names of the op trace it names. Beside it,
emulator-vs-CPU numerics: the session that compiled runs the graph once on the HTP emulator,
against the QDQ model on the CPU EP, computed once in this process for every version. Compile
times are the host compiler's wall time. Nothing here is device latency.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..core.atomic import sha256_file, write_text_atomic
from ..core.cache import StageCache
from ..core.errors import ProfileError, ToolchainError, UsageError
from ..core.interrupt import wait_child
from ..core.output_dir import holds_marker, place, staged_output_dir
from ..measure.agreement import Agreement, compare_outputs, cpu_session
from ..toolchains import (
    ENV_DIR,
    PYCACHE_DIR,
    ProgressCallback,
    ProgressEvent,
    QnnToolchainSpec,
    ToolchainState,
    ToolchainStatus,
    package_shim,
    parse_qnn_versions,
    probe_problems,
    reinstall_hint,
    resolve_toolchains,
    toolchain_in_use,
    version_key,
    worker_command,
    worker_env,
)
from .bn_guard import describe_guard, guarded_model
from .compile import compile_key
from .diff import diff_compiles
from .record import (
    COMPILE_FAILURE,
    COMPILE_RECORD,
    CONTEXT_BINARY,
    CONTEXT_ONNX,
    HTP_OUTPUTS,
    OP_TRACE,
    CompiledModel,
    CompileFailure,
    CompileJob,
    CompileRecord,
    CompileSpec,
    read_compile_record,
    traced_op_names,
)
from .session import HtpTarget
from .workers import worker_death

REPORT_NAME = "cross_version.json"
REPORT_KIND = "swiftformer-qnn.cross-version"
STAGE_NAME = "compile"  # the same stage as the export's, run by a toolchain's worker
WORKER_LOG = "worker.log"
WORKER_RESULT = "worker_result.json"
NOT_LATENCY = (
    "Structural comparison only: compile times are the host compiler's wall time (under "
    "parallel load), HTP ops from QNN's op trace, numerics from the x86 HTP emulator; nothing here is "
    "device latency."
)


class VersionCache(StageCache):
    """Each QNN version's compile in the stage cache: the export's stage, with its result model."""

    results = {STAGE_NAME: CompileRecord}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionResult(_Model):
    qnn_version: str
    onnxruntime_qnn: str
    onnxruntime: str
    status: Literal["ok", "failed", "crashed"]  # the compile's: "ok" once its compile.json is written
    error: str | None = None  # why the compile failed
    directory: str | None = None  # relative to the report's directory
    cached: bool = False
    compile: CompileRecord | None = None  # what `directory/compile.json` holds: every structural figure
    fidelity: Agreement | None = None  # the binary on the HTP emulator vs the QDQ model on the CPU EP
    # Why the emulator check of a compiled version failed (its run or the comparison); the
    # compile stands, `fidelity` is then None.
    emulator_error: str | None = None

    @property
    def label(self) -> str:
        return f"QNN {self.qnn_version}"


class OpTypeChange(_Model):
    op_type: str
    before: int
    after: int


class VersionDiff(_Model):
    """What changed from one QNN version to the next one that compiled."""

    before: str
    after: str
    htp_ops_before: int | None  # None: that QNN release wrote no op trace
    htp_ops_after: int | None
    op_type_changes: list[OpTypeChange] | None  # None: one side has no op trace
    ops_added: list[str] | None  # HTP op names only `after` built (op trace); None: one side has no trace
    ops_removed: list[str] | None  # HTP op names only `before` built


class CrossVersionReport(_Model):
    kind: str = REPORT_KIND
    schema_version: int = 1
    model: str
    model_sha256: str
    soc_model: int
    htp_arch: int
    fp16: bool
    emulated: bool
    jobs: int
    wall_s: float
    # Where this process's wall time went (inputs, workers, cpu_reference, collect); each worker's
    # own phases are in its `worker_result.json`.
    phases_s: dict[str, float] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    note: str = NOT_LATENCY
    versions: list[VersionResult]
    diffs: list[VersionDiff] = Field(default_factory=list)

    def version(self, qnn_version: str) -> VersionResult | None:
        return next((v for v in self.versions if v.qnn_version == qnn_version), None)

    @property
    def failed(self) -> list[VersionResult]:
        """The versions that did not compile."""
        return [v for v in self.versions if v.status != "ok"]

    @property
    def emulator_failed(self) -> list[VersionResult]:
        """The versions that compiled but whose emulator check failed."""
        return [v for v in self.versions if v.status == "ok" and v.emulator_error is not None]


# ---------------------------------------------------------------------------------------------
# Pure comparison


def fidelity(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> Agreement:
    """`candidate` against `reference`, all outputs flattened into one vector (`compare_outputs`
    on a single sample)."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference outputs vs {len(candidate)}")
    ref = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in reference])
    got = np.concatenate([np.asarray(c, dtype=np.float64).ravel() for c in candidate])
    if ref.shape != got.shape:
        raise ValueError(f"output sizes differ: {ref.size} vs {got.size}")
    return Agreement(**compare_outputs(ref[None], got[None], classify=False))


def diff_versions(a: VersionResult, b: VersionResult, names_a: list[str] | None = None,
                  names_b: list[str] | None = None) -> VersionDiff:
    """What changed from `a` to `b`, by their compile records (`diff.diff_compiles`) and the HTP
    op names of their op traces (`traced_op_names`; None where a release wrote no trace)."""
    if a.compile is None or b.compile is None:
        raise ValueError("only compiled versions are compared")
    diff = diff_compiles(a.compile, b.compile, names_a, names_b)
    ops = diff.figure("htp_op_count")
    changed = diff.changed_op_types
    return VersionDiff(
        before=a.qnn_version,
        after=b.qnn_version,
        htp_ops_before=ops.a,
        htp_ops_after=ops.b,
        op_type_changes=None if changed is None else [OpTypeChange(op_type=d.metric, before=d.a, after=d.b)
                                                      for d in changed],
        ops_added=None if diff.ops_added is None else list(diff.ops_added),
        ops_removed=None if diff.ops_removed is None else list(diff.ops_removed),
    )


def consecutive_diffs(versions: Sequence[VersionResult],
                      op_names: Mapping[str, list[str] | None] | None = None) -> list[VersionDiff]:
    """Each compiled version against the previous compiled one (in QNN version order).
    `op_names`: each version's traced HTP op names, by QNN version."""
    names = op_names or {}
    ok = [v for v in versions if v.status == "ok" and v.compile is not None]
    return [diff_versions(a, b, names.get(a.qnn_version), names.get(b.qnn_version)) for a, b in pairwise(ok)]


# ---------------------------------------------------------------------------------------------
# Inputs and the CPU reference


def default_inputs(model_path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """One deterministic standard-normal input per graph input (symbolic dims become 1)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in graph.input:
        if inp.name in initializers:
            continue
        t = inp.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in t.shape.dim]
        dtype = tensor_dtype_to_np_dtype(t.elem_type)
        feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def cpu_reference(model_path: Path, feeds: dict[str, np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
    """The QDQ model on onnxruntime's CPU EP: output names and values. It runs while every
    version's worker compiles, so its threads must not spin (`cpu_session`)."""
    session = cpu_session(model_path)
    names = [o.name for o in session.get_outputs()]
    return names, session.run(None, feeds)


def _ort_errors() -> tuple[type[BaseException], ...]:
    """What onnxruntime raises for a model it cannot load or run (its pybind errors derive from
    Exception only, so they are named)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NotImplemented",
             "RuntimeException")
    return (RuntimeError, ValueError, *(getattr(state, n) for n in names if hasattr(state, n)))


def _hash_inputs(feeds: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(feeds):
        a = np.ascontiguousarray(feeds[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Running the versions


class VersionFailure(Exception):
    """A version's worker failed; carried out of the stage cache (failures are not cached)."""

    def __init__(self, status: Literal["failed", "crashed"], message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class EmulatorFailure(Exception):
    """A version compiled but its worker's emulator run failed: the compile stands, and goes to
    the output without the stage cache (failures are not cached)."""

    def __init__(self, record: CompileRecord, message: str):
        super().__init__(message)
        self.record = record
        self.message = message


@dataclass
class _Job:
    spec: QnnToolchainSpec
    toolchain: ToolchainStatus


def run_worker(
    job: _Job,
    work: Path,
    request: CompileJob,
    shim: Path,
    timeout_s: float | None,
) -> CompileRecord:
    """Run one compile worker in `work`; return its compile record, or raise VersionFailure
    (no compile) or EmulatorFailure (compiled, but the emulator run failed)."""
    req_path = work / "worker_request.json"
    job_for_work = request.model_copy(update={"spec": request.spec.model_copy(update={"out_dir": work}),
                                              "spawned_at": time.time()})
    req_path.write_text(job_for_work.model_dump_json(indent=2))
    result_path = work / WORKER_RESULT
    log_path = work / WORKER_LOG
    python = job.toolchain.python
    if python is None:
        raise VersionFailure("failed", "the toolchain has no interpreter")
    # Only an installed toolchain is checked for imports leaking in from elsewhere, and keeps its
    # worker's bytecode; the default one is the main environment itself.
    loc = job.toolchain.location
    installed = loc if job.toolchain.state is ToolchainState.READY and loc is not None else None
    # The toolchain stays while its worker runs: `toolchains remove` refuses meanwhile.
    with open(log_path, "wb") as log, toolchain_in_use(installed):
        try:
            proc = subprocess.Popen(
                worker_command(python, "compile", "--request", str(req_path), "--result", str(result_path)),
                cwd=work,
                env=worker_env(shim, installed / PYCACHE_DIR if installed else None),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            wait_child(proc, timeout_s)  # a signal kills the worker (core.interrupt)
        except subprocess.TimeoutExpired:
            raise VersionFailure("failed", f"timed out after {timeout_s:.0f} s") from None
        except OSError as exc:
            raise VersionFailure(
                "failed", f"could not start {python}: {exc.strerror or exc}. {reinstall_hint(job.spec)}"
            ) from None
    result = None
    if result_path.is_file():
        try:
            result = json.loads(result_path.read_text())
        except ValueError:
            result = None
    if result is None:
        raise VersionFailure("crashed", f"the worker died ({worker_death(proc.returncode, log_path)})")
    if result.get("status") != "ok":
        raise VersionFailure("failed", f"{result.get('error_type', 'error')}: {result.get('message', '')}")
    env_dir = installed / ENV_DIR if installed else None
    problems = probe_problems(job.spec, {"status": "ok", **result.get("environment", {})}, env_dir)
    if problems:
        raise VersionFailure("failed", f"broken toolchain: {'; '.join(problems)}. {reinstall_hint(job.spec)}")
    try:
        record = read_compile_record(work / COMPILE_RECORD)  # a worker that wrote no valid record failed
    except ProfileError as exc:
        raise VersionFailure("failed", exc.message) from None
    if record.qnn_version != job.spec.qnn_version:
        raise VersionFailure("failed", f"the worker compiled with QNN {record.qnn_version}, not {job.spec.qnn_version}")
    if result.get("emulator_error"):
        raise EmulatorFailure(record, f"the HTP emulator run failed: {result['emulator_error']}")
    return record


def _version_dir_name(spec: QnnToolchainSpec) -> str:
    return spec.name  # "qnn-2.49.40"


def _place(spec: QnnToolchainSpec, source: Path, names: Sequence[str], record: CompileRecord, out_dir: Path,
           *, cached: bool = False) -> VersionResult:
    """Place one version's files `names` (those `source` holds) into `out_dir/qnn-<version>/`;
    its result, by its compile record."""
    dest = out_dir / _version_dir_name(spec)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in (*names, OP_TRACE, WORKER_LOG):  # 2.47 writes no op trace
        if (source / name).is_file():
            place(source / name, dest / name)
    return VersionResult(
        qnn_version=spec.qnn_version,
        onnxruntime_qnn=spec.onnxruntime_qnn,
        onnxruntime=spec.onnxruntime,
        status="ok",
        directory=dest.name,
        cached=cached,
        compile=record,
    )


def _emulator_fidelity(version_dir: Path, ref: list[np.ndarray], ref_names: list[str]) -> Agreement:
    """The version's emulator outputs (written by its worker) against the CPU reference."""
    with np.load(version_dir / HTP_OUTPUTS) as data:
        missing = [n for n in ref_names if n not in data.files]
        if missing:
            raise VersionFailure("failed", f"the HTP run did not produce output(s) {', '.join(missing)}")
        return fidelity(ref, [data[n] for n in ref_names])


def default_jobs(versions: int) -> int:
    """Every version at once, up to 8 (each L1 worker holds ~0.3 GB).

    The workers are CPU-bound and about equally long, so the OS sharing the cores among all
    of them ends them together after (versions x one worker) / cores; batches of one per core
    leave cores idle in the last batch (5 versions on 2 cores: 3 workers' time instead of 2.5).
    """
    return max(1, min(versions, 8))


def compile_across_versions(
    model: Path,
    versions: str | Sequence[str] | Sequence[QnnToolchainSpec],
    out_dir: Path,
    *,
    target: HtpTarget | None = None,
    emulate: bool = True,
    inputs: dict[str, np.ndarray] | None = None,
    subject: CompiledModel | None = None,
    jobs: int | None = None,
    toolchains_root: Path | None = None,
    cache: StageCache | None = None,
    timeout_s: float | None = 1800.0,
    progress: ProgressCallback | None = None,
) -> CrossVersionReport:
    """Compile the QDQ `model` with each QNN version in `versions` ("2.47,2.51", "all", specs).

    Writes `out_dir/qnn-<version>/` per version (the EP-context ONNX and its context binary,
    the op trace, `compile.json` (the `CompileRecord`, naming `subject` when given), and with
    `emulate` the emulator's outputs; a failed version gets `compile_failed.json`) and
    `out_dir/cross_version.json`.
    With `emulate`, each version's compiling session runs the graph once on the HTP emulator on
    `inputs` (default: seeded standard-normal), compared with the QDQ model on the CPU EP, which
    this process runs once, while the workers compile.

    Raises UsageError for an unknown version or a missing model, ToolchainError when a
    requested toolchain is not installed or broken (before anything runs), and UsageError when
    the CPU reference cannot run (after the running workers end; queued ones never start, and
    what this run wrote is removed). A version whose compile fails is reported in the result
    (status "failed"/"crashed"), not raised; one that compiled but whose emulator check failed
    keeps its compile and says why (`emulator_error`).
    """
    started = time.perf_counter()
    phases: dict[str, float] = {}
    progress = progress or (lambda _e: None)
    model = Path(model).absolute()
    if not model.is_file():
        raise UsageError(f"No model at {model}.")
    specs = (
        parse_qnn_versions(versions)
        if isinstance(versions, str) or all(isinstance(v, str) for v in versions)
        else sorted(set(versions), key=lambda s: version_key(s.qnn_version))  # type: ignore[arg-type]
    )
    if not specs:
        raise UsageError("No QNN version given.")
    target = target or HtpTarget()
    subject = subject or CompiledModel(precision="fp16" if target.fp16 else None)
    toolchains = resolve_toolchains(specs, toolchains_root)  # every problem before any work
    cache = cache or VersionCache()
    jobs = max(1, min(jobs or default_jobs(len(specs)), len(specs)))
    out_dir = Path(out_dir)
    out_dir_created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolchainError(f"Cannot write {out_dir}: {exc.strerror or exc}.") from None

    model_sha = sha256_file(model)
    feeds = (inputs if inputs is not None else default_inputs(model)) if emulate else {}
    phases["inputs"] = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="swiftformer-qnn-xv-") as tmp:
        shim = package_shim(Path(tmp) / "shim")
        inputs_npz = Path(tmp) / "inputs.npz"
        if emulate:
            np.savez(inputs_npz, **feeds)
        request = CompileJob(  # out_dir: each version's work directory (run_worker)
            spec=CompileSpec(model=model, out_dir=out_dir, target=target, subject=subject),
            inputs_npz=inputs_npz if emulate else None,
        )
        # The key has the model and inputs by content (`stage_inputs`), and each toolchain (`extra_key`).
        options = compile_key(target, None, subject) | {"emulate": emulate}
        stage_inputs = {"model": model_sha} | ({"inputs": _hash_inputs(feeds)} if emulate else {})
        outputs = (CONTEXT_ONNX, CONTEXT_BINARY, COMPILE_RECORD, WORKER_RESULT) + (
            (HTP_OUTPUTS,) if emulate else ()
        )

        written: list[Path] = []  # the version directories this run wrote, to remove them if it fails

        def one(job: _Job) -> VersionResult:
            spec = job.spec
            label = f"QNN {spec.qnn_version}"
            progress(ProgressEvent(label, "compile", f"with onnxruntime-qnn {spec.onnxruntime_qnn}"))
            t0 = time.perf_counter()
            written.append(out_dir / _version_dir_name(spec))
            placed: list[VersionResult] = []

            def produce(work: Path) -> CompileRecord:
                try:
                    return run_worker(job, work, request, shim, timeout_s)
                except EmulatorFailure as exc:  # placed before the cache removes `work`
                    placed.append(_place(spec, work, outputs, exc.record, out_dir))
                    placed[-1].emulator_error = exc.message
                    raise

            try:
                stage, cache_dir = cache.run(
                    STAGE_NAME,
                    options=options,
                    inputs=stage_inputs,
                    produce=produce,
                    outputs=outputs,
                    extra_key={
                        "qnn_version": spec.qnn_version,
                        "onnxruntime_qnn": spec.onnxruntime_qnn,
                        "onnxruntime": spec.onnxruntime,
                    },
                )
                result = _place(spec, cache_dir, list(stage.outputs), stage.results, out_dir, cached=stage.cached)
            except EmulatorFailure:
                result = placed[0]
            except VersionFailure as exc:
                result = _failed(spec, exc.status, exc.message, out_dir, subject)
            except (RuntimeError, OSError, ValueError) as exc:  # a worker that wrote less than promised
                result = _failed(spec, "failed", f"{type(exc).__name__}: {exc}", out_dir, subject)
            step = ("check failed" if result.emulator_error else "cached" if result.cached
                    else "done" if result.status == "ok" else result.status)
            progress(ProgressEvent(label, step, result.error or result.emulator_error or "", time.perf_counter() - t0))
            return result

        t0 = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="qnn-compile")
        try:
            running = [pool.submit(one, _Job(s, t)) for s, t in zip(specs, toolchains, strict=True)]
            # The CPU reference runs here while the workers compile: once for every version.
            try:
                ref_names, ref = cpu_reference(model, feeds) if emulate else ([], None)
            except _ort_errors() as exc:  # the model's fault; anything else is a bug and surfaces as one
                first = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
                raise UsageError(
                    f"onnxruntime's CPU EP could not run {model.name} on the comparison input: {first}",
                    hint="Check the model and its inputs run on onnxruntime, or compare without the emulator "
                         "check (--no-emulate).",
                ) from None
            phases["cpu_reference"] = time.perf_counter() - t0
            results = [f.result() for f in running]
        except BaseException:
            # Nothing half-written: the queued versions never start, the running ones finish
            # (a worker is a subprocess of its own), then what this run wrote goes.
            pool.shutdown(wait=True, cancel_futures=True)
            _remove_written(written, out_dir, out_dir_created)
            raise
        pool.shutdown(wait=True)
        phases["workers"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    op_names: dict[str, list[str] | None] = {}
    for i, (spec, result) in enumerate(zip(specs, results, strict=True)):
        if result.status != "ok" or result.compile is None:
            continue
        version_dir = out_dir / result.directory
        if ref is not None and result.emulator_error is None:
            # A check of a good compile: its failure is the check's, the compile stands.
            try:
                result.fidelity = _emulator_fidelity(version_dir, ref, ref_names)
            except VersionFailure as exc:
                result.emulator_error = exc.message
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                result.emulator_error = f"{type(exc).__name__}: {exc}"
        try:
            op_names[spec.qnn_version] = traced_op_names(version_dir, result.compile)
        except (ProfileError, OSError, ValueError) as exc:
            results[i] = _failed(spec, "failed", f"{type(exc).__name__}: {exc}", out_dir, subject)
    phases["collect"] = time.perf_counter() - t0

    report = CrossVersionReport(
        model=model.name,
        model_sha256=model_sha,
        soc_model=target.soc_model,
        htp_arch=target.htp_arch,
        fp16=target.fp16,
        emulated=emulate,
        jobs=jobs,
        wall_s=round(time.perf_counter() - started, 2),
        phases_s={k: round(v, 3) for k, v in phases.items()},
        versions=results,
        diffs=consecutive_diffs(results, op_names),
    )
    write_text_atomic(out_dir / REPORT_NAME, report.model_dump_json(indent=2))
    return report


def _remove_written(written: Sequence[Path], out_dir: Path, out_dir_created: bool) -> None:
    """Remove the version directories a failed run wrote, and `out_dir` if the run made it and
    it is empty now; nothing else there."""
    for d in written:
        shutil.rmtree(d, ignore_errors=True)
    if out_dir_created:
        try:
            out_dir.rmdir()
        except OSError:
            pass


def _failed(spec: QnnToolchainSpec, status: Literal["failed", "crashed"], message: str, out_dir: Path,
            subject: CompiledModel) -> VersionResult:
    failure = CompileFailure(qnn_version=spec.qnn_version, onnxruntime_qnn=spec.onnxruntime_qnn,
                             onnxruntime=spec.onnxruntime, status=status, error=message, model=subject)
    dest = out_dir / _version_dir_name(spec)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    write_text_atomic(dest / COMPILE_FAILURE, failure.model_dump_json(indent=2) + "\n")
    return VersionResult(**failure.model_dump(exclude={"kind", "model"}), directory=dest.name)


def read_report(directory: Path) -> CrossVersionReport | None:
    path = Path(directory) / REPORT_NAME
    if not path.is_file():
        return None
    try:
        return CrossVersionReport.model_validate_json(path.read_text())
    except ValueError:
        return None


def compile_versions_into(
    model: Path,
    versions: str | Sequence[str] | Sequence[QnnToolchainSpec],
    out: Path,
    *,
    force: bool = False,
    use_cache: bool = True,
    **kwargs,
) -> CrossVersionReport:
    """`compile_across_versions` into a directory of its own, built beside `out` and renamed
    into place when every version has finished (an interrupted run leaves no `out`).

    The one entry point of `toolchains compare`, `compile --qnn` and `export --qnn`.
    """
    out = Path(out)
    require_onnx(Path(model))
    # Replaces only an earlier comparison (with force) or an empty directory; says so before the compiles.
    earlier = holds_marker({REPORT_NAME: (REPORT_KIND,)}, "a QNN version comparison")
    with tempfile.TemporaryDirectory() as tmp:
        # Never compile a graph known to be corrupted: every version gets the guarded model.
        source, guard = guarded_model(Path(model), Path(tmp), name=Path(model).name)
        if (note := describe_guard(guard)) is not None:
            logging.getLogger(__name__).warning(note)
        with staged_output_dir(out, force=force, inspect=earlier) as work:
            return compile_across_versions(source, versions, work, cache=VersionCache(enabled=use_cache), **kwargs)


def require_model_file(model: Path) -> None:
    """A file at `model`, or a UsageError: the check before anything slow (a toolchain's
    install), without parsing the graph (`require_onnx` does, later)."""
    if model.is_dir():
        raise UsageError(f"{model} is a directory, not an ONNX model.", hint="Pass the path of a QDQ .onnx model.")
    if not model.is_file():
        raise UsageError(f"{model} does not exist.", hint="Pass the path of a QDQ .onnx model.")


def require_onnx(model: Path) -> None:
    """An ONNX model file with at least one node, or a UsageError saying what it is instead."""
    import onnx

    require_model_file(model)
    try:
        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception:
        raise UsageError(f"{model} is not an ONNX model.", hint="Pass a QDQ .onnx (e.g. model.qdq.onnx of an export).") from None
    if not graph.node:
        raise UsageError(f"{model} is an ONNX model with no nodes: nothing to compile.",
                         hint="Pass a QDQ .onnx (e.g. model.qdq.onnx of an export).")
    _check_external_data(model, graph)


def _check_external_data(model: Path, graph) -> None:
    """Weights kept in files beside the model (ONNX external data) must be there, inside the
    model's folder: onnx refuses a location outside it, which is bad input, not a bug."""
    import onnx

    from ..core.errors import UsageError

    folder = model.resolve().parent
    for t in graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UsageError(f"{model}: tensor {t.name!r} keeps its data in {location!r}, outside the model's folder; "
                             "it is not read.",
                             hint="Keep the external data file in the model's folder (onnx.save_model(..., "
                                  "save_as_external_data=True, location='model.data')).")
        if not target.is_file():
            raise UsageError(f"{model}: tensor {t.name!r} keeps its data in {location!r}, which is not a file in "
                             f"{folder}.", hint="Put the model's external data file beside it.")
