"""The one `profile` entry point: find (or build) exports, profile them on AI Hub or the
HTP emulator, and return typed results. The CLI only parses options and renders these.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import HubError, OutputDirError, UsageError
from ..core.targets import DEFAULT_SOC, SOCS, Precision, Soc, get_precision, get_soc
from ..core.versions import is_version_tag, parse_qnn_version, same_release
from ..htp.record import CompileRecord
from ..measure.schema import ModelInfo, Profile
from ..model.variants import Variant, get_variant
from ..pipeline.artifacts import ExportManifest, read_manifest
from ..pipeline.requests import ExportedRequest
from ..pipeline.stage_results import ExportResults
from ..toolchains import split_versions
from .aihub import (
    DEFAULT_POLL_S,
    DEFAULT_RUNS,
    DEFAULT_TIMEOUT_S,
    HubJobFailure,
    HubOptions,
    HubSession,
    HubTarget,
)
from .aihub_client import HubConfig, check_hub_config
from .aihub_payload import profile_stem
from .devices import Backend, DeviceTarget, resolve_device

if TYPE_CHECKING:
    from ..htp.session import HtpTarget

log = logging.getLogger(__name__)

DEFAULT_DEVICE = "Samsung Galaxy S23 Ultra"
# Under build/ (ignored by git), like exports: a run in a checkout leaves nothing untracked.
DEFAULT_RUNS_DIR = Path("build") / "profiles"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProfileRequest:
    """What `swiftformer-qnn profile` was asked to do."""

    device: str = DEFAULT_DEVICE
    from_dirs: tuple[Path, ...] = ()  # export directories; empty: run the export here
    # Export mode (no from_dirs): the variant, plus the standalone encoder block by default.
    variant: str = "l1"
    precision: str = "w8a8"
    include_encoder: bool = True
    weights: Path | None = None
    attention: str | None = None
    resolution: int | None = None  # of the main variant only
    encoder_dim: int | None = None
    qnn: tuple[str, ...] = ()  # QAIRT versions to compile with; empty: AI Hub's default
    graphs: tuple[str, ...] = ("htp",)  # export mode: graph forms to export, profiled side by side
    runs: int = DEFAULT_RUNS
    out_dir: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    poll_s: float = DEFAULT_POLL_S
    new_jobs: bool = False
    retry_failed: bool = False
    force: bool = False  # export mode: replace a default export directory holding another request
    check_outputs: bool = False  # AI Hub: also run held-out inputs on the device and compare outputs
    qnn_sdk: Path | None = None  # --device adb: the QAIRT SDK to run with (default: $QNN_SDK_ROOT)


@dataclass(frozen=True)
class ExportSource:
    """One export directory, read for what profiling needs."""

    directory: Path
    manifest: ExportManifest
    variant: Variant
    precision: Precision
    soc: Soc
    model_info: ModelInfo
    model_path: Path  # what AI Hub compiles / the emulator runs: QDQ, or the float graph for fp16


@dataclass(frozen=True)
class ProfiledModel:
    label: str  # e.g. "l1-w8a8-qnn2.31"
    profile: Profile
    files: dict[str, Path]  # profile, raw, binary (AI Hub) / profile, raw (emulator)
    resumed: dict[str, bool] = field(default_factory=dict)  # AI Hub: which jobs came from the journal
    ran: str | None = None  # emulator: which compile ran (the export's own binary, or why it was compiled again)


@dataclass
class ProfileRunResult:
    backend: Backend
    device: str
    out_dir: Path
    profiled: list[ProfiledModel] = field(default_factory=list)
    failures: list[HubJobFailure] = field(default_factory=list)
    journal: Path | None = None
    exports: list[Path] = field(default_factory=list)

    def failure_error(self) -> HubError | None:
        """One error naming every failed or unfinished job (with its URL), or None."""
        if not self.failures:
            return None
        lines = "; ".join(f.one_line() for f in self.failures)
        hints = []
        if any(f.resumable for f in self.failures):
            hints.append(f"Rerun the same command to resume the unfinished jobs (ids in {self.journal}).")
        if not all(f.resumable for f in self.failures):
            hints.append("Failed jobs are not resubmitted on their own: fix the cause, then rerun with --retry-failed.")
        total = len(self.failures) + len(self.profiled)
        return HubError(f"{len(self.failures)} of {total} profiles did not finish: {lines}", hint=" ".join(hints))


# --- export directories ------------------------------------------------------------------


def read_export(directory: Path) -> ExportSource:
    """The model, variant and precision of one complete export directory."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise OutputDirError(
            f"{directory} is not a complete export (no manifest.json of swiftformer-qnn).",
            hint="Run `swiftformer-qnn export` first, or omit --from to export here.",
        )
    req = manifest.request
    if not isinstance(req, ExportedRequest):
        raise OutputDirError(f"{directory} holds a compile of {Path(req.model).name}, not an export of SwiftFormer.",
                             hint="Pass an export directory (swiftformer-qnn export).")
    variant = get_variant(req.variant)
    precision = get_precision(req.precision)
    soc = get_soc(req.soc)
    # fp16 uploads the float graph (AI Hub runs it with --quantize_full_type float16).
    model_path = (
        manifest.artifact(directory, "quantize", "model.qdq.onnx")
        if precision.is_quantized
        else manifest.artifact(directory, "simplify", "model.sim.onnx")
    )
    if not model_path.is_file():
        raise OutputDirError(f"{model_path} is missing from the export directory.")
    exported = manifest.results("export", ExportResults)
    model_info = ModelInfo(
        variant=variant.name,
        input_shape=list(req.input_shape),
        precision=precision.value,
        weights=req.weights,
        attention=exported.attention if exported else (req.attention_requested or "normalize"),
        opset=exported.opset if exported else req.opset,
        graph=exported.graph if exported else req.graph,
    )
    return ExportSource(directory, manifest, variant, precision, soc, model_info, model_path)


def heldout_inputs(source: ExportSource) -> Path:
    """The export's held-out inputs (`inputs/heldout.npy`, else the verify sample), preprocessed."""
    m = source.manifest
    for stage, name in (("inputs", "heldout.npy"), ("verify", "sample_input.npy")):
        if m.stage(stage) and name in m.stage(stage).outputs:
            return m.artifact(source.directory, stage, name)
    raise OutputDirError(f"{source.directory}: the export has no held-out inputs (inputs/heldout.npy).",
                         hint="Re-export it with this version, or profile without --check-outputs.")


def emulator_feeds(source: ExportSource) -> dict[str, Any]:
    """One preprocessed held-out input, under the graph's own input name (emulator and phone runs)."""
    import numpy as np
    import onnx

    m = source.manifest
    if m.stage("verify") and "sample_input.npy" in m.stage("verify").outputs:
        x = np.load(m.artifact(source.directory, "verify", "sample_input.npy"))
    elif m.stage("inputs") and "heldout.npy" in m.stage("inputs").outputs:
        x = np.load(m.artifact(source.directory, "inputs", "heldout.npy"))[:1]
    else:
        raise OutputDirError(f"{source.directory}: the export has no sample input (verify/sample_input.npy).")
    graph = onnx.load(str(source.model_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    name = next(i.name for i in graph.input if i.name not in initializers)
    return {name: x.astype(np.float32)}


def _run_exports(req: ProfileRequest, soc: Soc, export_progress: Callable | None) -> list[Path]:
    from ..pipeline import ExportRequest, run_export

    variants = [req.variant]
    if req.include_encoder and get_variant(req.variant).name != "encoder":
        variants.append("encoder")
    dirs = []
    for name, graph in ((n, g) for n in variants for g in req.graphs):
        is_encoder = get_variant(name).is_encoder_block
        try:
            result = run_export(
                ExportRequest(
                    variant=name,
                    graph=graph,
                    weights=req.weights,
                    attention=req.attention,
                    precision=req.precision,
                    soc=soc.name,
                    resolution=None if is_encoder and name != req.variant else req.resolution,
                    encoder_dim=req.encoder_dim if is_encoder else None,
                    force=req.force,
                ),
                progress=export_progress,
            )
        except OutputDirError as exc:
            raise _for_profile(exc) from None
        dirs.append(result.directory)
    return dirs


def _for_profile(exc: OutputDirError) -> OutputDirError:
    """The export's advice, in `profile`'s options: profile has --force, not --output-dir."""
    if exc.hint and "--force" in exc.hint:
        hint = ("Pass --force to replace it, or export elsewhere yourself "
                "(swiftformer-qnn export --output-dir DIR) and profile that with --from DIR.")
    else:
        hint = ("Export yourself into a writable place (swiftformer-qnn export --output-dir DIR) "
                "and profile that with --from DIR.")
    return OutputDirError(exc.message, hint=hint)


def file_labels(sources: list[ExportSource]) -> list[str]:
    """The model part of each source's file names, unique among `sources`.

    `<variant>-<precision>`, with the input size when it is not the variant's default
    (`xs-r64-w8a8`, `encoder-d96x32-w8a8`, as the export directories are named); two exports
    that still share it (other weights, calibration or tools) get a short hash of their
    request as well (`l1-w8a8-3f9c2a1d`), so neither overwrites the other's files.
    """
    base = []
    for s in sources:
        shape = list(s.model_info.input_shape)
        size = ""
        if shape != list(s.variant.input_shape()) and len(shape) == 4:
            hw = f"{shape[2]}" if shape[2] == shape[3] else f"{shape[2]}x{shape[3]}"
            size = f"-d{shape[1]}x{hw}" if s.variant.is_encoder_block else f"-r{hw}"
        # As export names its directories: the faithful graph is marked (exports from before graph
        # forms, which are faithful too, keep the names they had).
        graph = "-faithful" if s.manifest.request.graph == "faithful" else ""
        base.append(f"{s.variant.name}{size}-{s.precision.value}{graph}")
    counts = Counter(base)
    return [b if counts[b] == 1 else f"{b}-{s.manifest.request_key[:8]}" for b, s in zip(base, sources, strict=True)]


def _distinct(sources: list[ExportSource], emit: Progress) -> list[ExportSource]:
    """One source per export: two directories holding the same request are the same model."""
    kept: dict[str, ExportSource] = {}
    for s in sources:
        first = kept.setdefault(s.manifest.request_key, s)
        if first is not s:
            emit(f"{s.directory} holds the same export as {first.directory}; profiling it once")
    return list(kept.values())


# --- the entry point ----------------------------------------------------------------------


def _qnn_versions(values: tuple[str, ...]) -> list[str]:
    """`--qnn 2.31 --qnn 2.33` or `--qnn 2.31,2.33`, de-duplicated in order.

    AI Hub offers QAIRT versions that are no local toolchain, so these are checked here only
    to be versions (`versions.parse_qnn_version`); what AI Hub offers is checked against
    `get_frameworks()` before any upload.
    """
    out: list[str] = []
    for part in split_versions(values):
        parsed = parse_qnn_version(part)
        if is_version_tag(part):
            part = part.strip().lower()
        elif parsed is None:
            raise UsageError(f"--qnn {part!r} is not a QAIRT version.", hint="Use e.g. --qnn 2.31 (or default, latest).")
        else:
            part = parsed.short  # "v2.31" -> "2.31", as --qairt_version takes it
        if part not in out:
            out.append(part)
    return out


def _graph_forms(values: tuple[str, ...]) -> tuple[str, ...]:
    """`--graph htp --graph faithful` or `--graph htp,faithful`, de-duplicated in order."""
    from ..pipeline.orchestrator import GRAPH_FORMS

    out: list[str] = []
    for part in (p.strip().lower() for v in values for p in v.split(",") if p.strip()):
        if part not in GRAPH_FORMS:
            raise UsageError(f"--graph {part!r} is not a graph form.", hint=f"Use {', '.join(GRAPH_FORMS)}, or both.")
        if part not in out:
            out.append(part)
    return tuple(out) or ("htp",)


def default_out_dir() -> Path:
    return DEFAULT_RUNS_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")


def run_profile(
    req: ProfileRequest,
    progress: Progress | None = None,
    export_progress: Callable | None = None,
) -> ProfileRunResult:
    """Profile exports on the requested device. AI Hub needs a token, checked before any work."""
    emit = progress or (lambda msg: None)
    device = resolve_device(req.device)
    if req.runs < 1:
        raise UsageError("--runs must be at least 1.")
    qnn = _qnn_versions(req.qnn)
    graphs = _graph_forms(req.graphs)
    if req.from_dirs and graphs != ("htp",):
        raise UsageError("--graph chooses what profile exports; an export given with --from has its own graph.",
                         hint="Drop --graph, or drop --from to export each graph form here.")
    req = dataclasses.replace(req, graphs=graphs)
    config: HubConfig | None = None
    if device.backend is Backend.AIHUB:
        config = check_hub_config()
    elif device.backend is Backend.EMULATOR:
        _check_emulator_qnn(qnn)
    elif device.backend is Backend.ESTIMATE:
        if req.check_outputs:
            raise UsageError("--check-outputs runs held-out inputs on a phone; an estimate runs nothing.",
                             hint="Drop --check-outputs, or profile on an AI Hub device.")
        qnn = _estimate_qnn(req.qnn)  # local toolchains, checked (not installed) before any export
    elif qnn:
        raise UsageError("--qnn picks AI Hub's QAIRT version; on a phone the SDK decides it.",
                         hint="Drop --qnn and pass the SDK with --qnn-sdk DIR (or QNN_SDK_ROOT).")
    if req.check_outputs and device.backend is not Backend.AIHUB:
        raise UsageError("--check-outputs runs held-out inputs on a phone through AI Hub (an inference job).",
                         hint="Drop --check-outputs, or profile on an AI Hub device. `verify` compares the "
                         "emulated HTP with the CPU.")
    out_dir = Path(req.out_dir) if req.out_dir else default_out_dir()
    if out_dir.exists() and not out_dir.is_dir():  # before any export or (paid) job, not at the first write
        raise UsageError(f"--out {out_dir} is a file, not a directory.", hint="Pass a directory for the profiles.")

    if req.from_dirs:
        sources = _distinct([read_export(d) for d in req.from_dirs], emit)
    else:
        soc = device.soc or SOCS[DEFAULT_SOC]
        sources = [read_export(d) for d in _run_exports(req, soc, export_progress)]

    if device.backend is Backend.EMULATOR:
        result = _profile_on_emulator(sources, device, out_dir, emit)
    elif device.backend is Backend.ESTIMATE:
        result = _profile_on_estimator(sources, device, out_dir, qnn, emit)
    elif device.backend is Backend.ADB:
        result = _profile_on_phone(sources, device, out_dir, req, emit)
    else:
        result = _profile_on_hub(sources, device, out_dir, qnn, req, config, emit)
    result.exports = [s.directory for s in sources]
    return result


def _profile_on_hub(
    sources: list[ExportSource],
    device: DeviceTarget,
    out_dir: Path,
    qnn: list[str],
    req: ProfileRequest,
    config: HubConfig | None,
    emit: Progress,
) -> ProfileRunResult:
    def check_files(s: ExportSource) -> dict[str, Path]:
        if not req.check_outputs:
            return {}
        return {"check_inputs": heldout_inputs(s),
                "fp32_model": s.manifest.artifact(s.directory, "simplify", "model.sim.onnx")}

    targets = [
        HubTarget(s.model_path, s.model_info, v, name=name, **check_files(s))
        for s, name in zip(sources, file_labels(sources), strict=True)
        for v in (qnn or [None])
    ]
    options = HubOptions(
        runs=req.runs, timeout_s=req.timeout_s, poll_s=req.poll_s, new_jobs=req.new_jobs, retry_failed=req.retry_failed
    )
    session = HubSession(out_dir, options, emit, config=config)
    run = session.run(targets, device)
    profiled = [
        ProfiledModel(
            label=r.target.label,
            profile=r.profile,
            files={"profile": r.profile_path, "raw": r.raw_path, **({"binary": r.binary_path} if r.binary_path else {})},
            resumed=r.resumed,
        )
        for r in run.results
    ]
    return ProfileRunResult(Backend.AIHUB, run.device, out_dir, profiled, run.failures, run.journal)


def _check_emulator_qnn(qnn: list[str]) -> None:
    if not qnn:
        return
    from ..htp.session import qnn_sdk_version

    bundled = qnn_sdk_version()
    for v in qnn:
        if not same_release(v, bundled):
            raise UsageError(
                f"The HTP emulator runs the QNN SDK bundled with onnxruntime-qnn ({bundled}), not {v}.",
                hint="Drop --qnn for --device emulator, or profile that version on AI Hub.",
            )


@dataclass(frozen=True)
class EmulatorInput:
    """What the emulator runs for one export: its own compile, or its model compiled again."""

    model: Path  # the export's model.ctx.onnx, or the QDQ (fp16: float) model
    record: CompileRecord | None  # the export's compile record, when its binary is what runs
    why: str  # one phrase: what was checked, or why the model is compiled again
    compiled_from: Path | None = None  # the ONNX the export's binary was compiled from (for attribution)

    def describe(self) -> str:
        if self.record is not None:
            return f"the export's own context binary ({self.why}); not compiled again"
        return f"{self.model.name} compiled again for this run: {self.why}"


def emulator_input(source: ExportSource, target: HtpTarget, qnn_version: str) -> EmulatorInput:
    """The export's context binary and its `CompileRecord`, checked against the manifest, when
    the emulator can run them as they are; else the export's model, compiled again, and why.

    Compiled again only when the export holds no binary or it was made with another QNN
    version (or for another target). A binary whose bytes differ from what the manifest and
    `compile.json` record is a damaged export: OutputDirError, nothing run."""
    m, d = source.manifest, source.directory
    stage = m.stage("compile")
    if stage is None:
        return EmulatorInput(source.model_path, None, "the export stopped before compiling")
    record = m.results("compile", CompileRecord)
    binary = d / record.context_binary
    if not binary.is_file() or not (d / record.context_onnx).is_file():
        return EmulatorInput(source.model_path, None, f"the export's {record.context_binary} is missing")
    if record.qnn_version != qnn_version:
        return EmulatorInput(source.model_path, None,
                             f"the export was compiled with QNN {record.qnn_version}; the emulator runs {qnn_version}")
    if (record.soc_model, record.htp_arch, record.fp16) != (target.soc_model, target.htp_arch, target.fp16):
        return EmulatorInput(source.model_path, None, "the export was compiled for another target")
    damaged = [why for why in (out.matches(d) for out in stage.outputs.values()) if why]
    # The loop above hashed every output against the manifest; the binary's recorded hash must
    # then be the one compile.json names (no second read of the largest file).
    in_manifest = next((o.sha256 for o in stage.outputs.values() if Path(o.path).name == record.context_binary), None)
    if not damaged and in_manifest != record.context_binary_sha256:
        damaged.append(f"{record.context_binary} is not the binary its compile record names")
    compiled_from = None
    for name, sha in stage.inputs.items():  # "quantize/model.qdq.onnx" -> its hash when compiled
        in_stage, output = name.split("/", 1)
        compiled_from = m.artifact(d, in_stage, output)  # the file checked against the manifest ...
        if not damaged and m.stage(in_stage).outputs[output].sha256 != sha:  # ... and the manifest against compile
            damaged.append(f"{compiled_from.name} is not the model the binary was compiled from")
    if damaged:
        raise OutputDirError(
            f"{d}: the export's compile does not match its manifest ({'; '.join(damaged)}).",
            hint="Run the same export again: it rebuilds the files that no longer match its manifest.",
        )
    return EmulatorInput(d / record.context_onnx, record,
                         f"{record.context_binary}, QNN {record.qnn_version}, "
                         f"sha256 {record.context_binary_sha256[:12]} as in compile.json and the manifest",
                         compiled_from)


def _profile_on_emulator(
    sources: list[ExportSource], device: DeviceTarget, out_dir: Path, emit: Progress
) -> ProfileRunResult:
    from ..htp.session import HtpTarget, qnn_sdk_version
    from .emulator import profile_on_emulator

    result = ProfileRunResult(Backend.EMULATOR, device.display_name, out_dir)
    bundled = qnn_sdk_version()
    targets = [HtpTarget(soc_model=s.soc.soc_model, htp_arch=s.soc.htp_arch, fp16=not s.precision.is_quantized)
               for s in sources]
    inputs = [emulator_input(s, t, bundled) for s, t in zip(sources, targets, strict=True)]  # a damaged export: before any run
    out_dir.mkdir(parents=True, exist_ok=True)
    for s, label, target, what in zip(sources, file_labels(sources), targets, inputs, strict=True):
        emit(f"{label}: running {what.describe()} on the HTP emulator (cycles, not device latency)")
        # QNN writes fixed file names (qnn_profile.csv, qnn_op_trace.json): one folder per model.
        raw_dir = out_dir / f"{label}.emulator-raw"
        profile = profile_on_emulator(what.model, emulator_feeds(s), s.variant, s.model_info, target, raw_dir,
                                      compiled_from=what.compiled_from)
        note = f"{profile.provenance.note} Ran {what.describe()}."
        profile = profile.model_copy(update={"provenance": profile.provenance.model_copy(update={"note": note})})
        qnn = profile.toolchain.qnn_version or "unknown"
        stem = profile_stem(label, qnn, profile.target.device)
        final_raw = out_dir / f"{stem}.raw"
        if final_raw.exists():
            import shutil

            shutil.rmtree(final_raw)
        raw_dir.rename(final_raw)
        path = profile.save(out_dir / f"{stem}.profile.json")
        result.profiled.append(ProfiledModel(f"{label}-qnn{qnn}", profile, {"profile": path, "raw": final_raw},
                                             ran=what.describe()))
        result.device = profile.target.device
    return result


def _estimate_qnn(values: tuple[str, ...]) -> list[str]:
    """`--qnn 2.47,2.51` for estimates: local toolchains (`toolchains list`), in version order;
    empty: the onnxruntime-qnn of this environment."""
    from ..toolchains import parse_qnn_versions

    return [s.qnn_version for s in parse_qnn_versions(list(values))] if values else []


def _profile_on_estimator(
    sources: list[ExportSource], device: DeviceTarget, out_dir: Path, qnn: list[str], emit: Progress
) -> ProfileRunResult:
    """Estimate each export with each QNN version (`htp.estimate`): one compile for the proxy SoC
    of the export's HTP architecture per version, no device, no emulator run."""
    from ..htp.estimate import estimator_soc
    from ..htp.sweep import require_onnx
    from .estimate import estimate_export_model

    for s in sources:  # an architecture without an estimator SoC, a damaged model: refused before any compile
        estimator_soc(s.soc.htp_arch)
        require_onnx(s.model_path)
    if qnn:  # installed on first use, as `export --qnn` does
        from ..toolchains import ensure_toolchains, parse_qnn_versions

        ensure_toolchains(parse_qnn_versions(qnn), progress=lambda e: emit(f"{e.subject}: {e.step} {e.detail}".strip()))
    result = ProfileRunResult(Backend.ESTIMATE, device.display_name, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for s, label in zip(sources, file_labels(sources), strict=True):
        proxy = estimator_soc(s.soc.htp_arch)
        for version in qnn or [None]:
            emit(f"{label}: estimating with QNN {version or 'of this environment'} for {proxy.name} "
                 f"(soc_model {proxy.soc_model}, proxy for {s.soc.name.upper()}): one compile, no device")
            import shutil

            work = out_dir / f".{label}.estimate-work"
            shutil.rmtree(work, ignore_errors=True)
            try:
                profile, _ = estimate_export_model(s.model_path, s.variant, s.model_info, work,
                                                   htp_arch=s.soc.htp_arch, stands_for=s.soc.name, qnn=version)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)  # nothing half-written is left behind
                raise
            ran = profile.toolchain.qnn_version or "unknown"
            stem = profile_stem(label, ran, profile.target.device)
            final_raw = out_dir / f"{stem}.raw"
            if final_raw.exists():
                shutil.rmtree(final_raw)
            work.rename(final_raw)
            path = profile.save(out_dir / f"{stem}.profile.json")
            result.profiled.append(ProfiledModel(f"{label}-qnn{ran}", profile, {"profile": path, "raw": final_raw},
                                                 ran=f"one compile with QNN {ran} for {proxy.name}, no device"))
    return result


def _profile_on_phone(
    sources: list[ExportSource], device: DeviceTarget, out_dir: Path, req: ProfileRequest, emit: Progress
) -> ProfileRunResult:
    from .qnn_net_run import PhoneSession
    from .qnn_sdk import release

    result = ProfileRunResult(Backend.ADB, device.display_name, out_dir)
    with PhoneSession.open(device.name, req.qnn_sdk, sources, out_dir, req.runs, emit) as session:
        result.device = f"{session.phone.device_name} ({session.phone.adb.serial})"
        for s, label in zip(sources, file_labels(sources), strict=True):
            got = session.profile(s, label, emulator_feeds(s))
            qnn = release(got.profile.toolchain.qnn_version) or "unknown"
            result.profiled.append(ProfiledModel(f"{label}-qnn{qnn}", got.profile, {"profile": got.profile_path, "raw": got.raw_dir}))
    return result


def list_devices(progress: Callable[[str], None] | None = None) -> tuple[HubConfig, list[dict[str, Any]]]:
    """The devices AI Hub offers (needs a token, like every AI Hub call); the client's retries
    are reported through `progress`."""
    from .aihub_client import list_devices as _list

    config = check_hub_config()
    return config, _list(config, progress)


# --- importing a profile a user already has -------------------------------------------------


def import_profile(
    file: Path, export_dir: Path, *, device: str | None = None, qnn: str | None = None, out_dir: Path | None = None
) -> ProfiledModel:
    """Convert a downloaded profile (any format in `importers.IMPORTERS`) into our schema,
    attributed to the blocks of the export it measured, and save it under `out_dir`.
    An existing profile file is never replaced."""
    from . import importers

    source = read_export(export_dir)
    label = file_labels([source])[0]
    ctx = importers.ImportContext(
        export_dir=source.directory, manifest=source.manifest, model=source.model_info, model_path=source.model_path,
        label=label,
        device=device, qnn=qnn,
    )
    name, profile = importers.load(Path(file), ctx)
    out = Path(out_dir) if out_dir else default_out_dir()
    qnn_label = profile.toolchain.qnn_version or profile.toolchain.qairt_version or "unknown"
    path = out / f"{profile_stem(label, qnn_label, profile.target.device)}.profile.json"
    if path.exists():
        raise OutputDirError(f"{path} already exists; it is not replaced.", hint="Pass another --out directory.")
    profile.save(path)
    log.info("imported %s as %s (%s)", file, path, name)
    return ProfiledModel(label=f"{label}-qnn{qnn_label}", profile=profile, files={"profile": path, "imported": Path(file)})
