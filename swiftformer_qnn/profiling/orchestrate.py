"""`profile`'s modes: find exports (or make the default one), profile them on AI Hub, the HTP
emulator or the user's phone, and return typed results. The CLI only parses options and
renders these.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..core.errors import HubError, OutputDirError, UsageError
from ..core.targets import DEFAULT_SOC, SOCS
from ..core.versions import is_version_tag, parse_qnn_version, same_release, short_version
from ..htp.record import CompileRecord
from ..measure.schema import Profile
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
from .exports import (
    ExportSource,
    default_export,
    distinct,
    emulator_feeds,
    file_labels,
    output_check_files,
    read_export,
)
from .raw import keep_raw, write_marker

if TYPE_CHECKING:
    from ..htp.session import HtpTarget

log = logging.getLogger(__name__)

DEFAULT_DEVICE = "Samsung Galaxy S23 Ultra"
# Under build/ (ignored by git), like exports: a run in a checkout leaves nothing untracked.
DEFAULT_RUNS_DIR = Path("build") / "profiles"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProfileRequest:
    """What every mode of `swiftformer-qnn profile` takes: the exports, and where profiles go."""

    from_dirs: tuple[Path, ...] = ()  # export directories; empty: the default export of `export`
    out_dir: Path | None = None


@dataclass(frozen=True)
class HubRequest(ProfileRequest):
    """`profile`: a phone through Qualcomm AI Hub."""

    device: str = DEFAULT_DEVICE
    qnn: tuple[str, ...] = ()  # QAIRT versions to compile with; empty: AI Hub's default
    runs: int = DEFAULT_RUNS
    timeout_s: float = DEFAULT_TIMEOUT_S
    poll_s: float = DEFAULT_POLL_S
    new_jobs: bool = False
    retry_failed: bool = False
    check_outputs: bool = False  # also run held-out inputs on the device and compare outputs


@dataclass(frozen=True)
class EmulatorRequest(ProfileRequest):
    """`profile emulator`: the x86 HTP emulator onnxruntime-qnn bundles (cycles, not latency)."""

    qnn: tuple[str, ...] = ()  # only the bundled release (checked)


@dataclass(frozen=True)
class EstimateRequest(ProfileRequest):
    """`profile estimate`: QNN's HTP performance estimator for a proxy SoC (estimated, not latency)."""

    qnn: tuple[str, ...] = ()  # local QNN toolchains; empty: this environment's onnxruntime-qnn


@dataclass(frozen=True)
class PhoneRequest(ProfileRequest):
    """`profile phone`: the user's own phone over adb, with the user's QAIRT SDK (qnn-net-run)."""

    serial: str | None = None  # adb serial; None: the one phone attached
    runs: int = DEFAULT_RUNS
    qnn_sdk: Path | None = None  # default: $QNN_SDK_ROOT


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


def default_out_dir() -> Path:
    return DEFAULT_RUNS_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")


def _profile(req: ProfileRequest, device: DeviceTarget, progress: Progress | None, export_progress: Callable | None,
             run: Callable[[list[ExportSource], Path, Progress], ProfileRunResult],
             before_work: Callable[[], None] = lambda: None) -> ProfileRunResult:
    """What every mode does around its own run: the output directory and the exports given
    (--from) checked first, local and cheap, so a mistyped path is named as such; then
    `before_work` (AI Hub's token), before the default export is made or any (paid) job starts."""
    emit = progress or (lambda msg: None)
    out_dir = Path(req.out_dir) if req.out_dir else default_out_dir()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a directory.", hint="Pass a directory for the profiles.")
    given = distinct([read_export(d) for d in req.from_dirs], emit) if req.from_dirs else None
    before_work()
    sources = given or [read_export(default_export(device.soc or SOCS[DEFAULT_SOC], export_progress))]
    result = run(sources, out_dir, emit)
    result.exports = [s.directory for s in sources]
    return result


def _check_runs(runs: int) -> None:
    if runs < 1:
        raise UsageError("--runs must be at least 1.")


# Each mode of `profile` is one function taking its own request. A new mode (a device, a
# runtime, an estimator) is one more request type, one more function here and one more
# `profile` subcommand in cli/profile.py.


def run_on_hub(
    req: HubRequest, progress: Progress | None = None, export_progress: Callable | None = None
) -> ProfileRunResult:
    """Profile exports on a phone through AI Hub. The token is checked before any export is made
    or job submitted (after the options and the exports given, which are local)."""
    device = resolve_device(req.device)
    if device.backend is not Backend.AIHUB:
        raise UsageError(f"--device {req.device!r} is not an AI Hub device.",
                         hint=f"Use `swiftformer-qnn profile {_SUBCOMMAND[device.backend]}`.")
    _check_runs(req.runs)
    qnn = _qnn_versions(req.qnn)
    config = None  # the token's configuration, once `_profile` has checked what is local

    def check_token() -> None:
        nonlocal config
        config = check_hub_config()

    return _profile(req, device, progress, export_progress,
                    lambda sources, out, emit: _profile_on_hub(sources, device, out, qnn, req, config, emit),
                    before_work=check_token)


def run_on_emulator(
    req: EmulatorRequest, progress: Progress | None = None, export_progress: Callable | None = None
) -> ProfileRunResult:
    """Profile exports on the local HTP emulator: op cycles, no device latency, no token."""
    device = resolve_device("emulator")
    _check_emulator_qnn(_qnn_versions(req.qnn))
    return _profile(req, device, progress, export_progress,
                    lambda sources, out, emit: _profile_on_emulator(sources, device, out, emit))


def run_on_estimate(
    req: EstimateRequest, progress: Progress | None = None, export_progress: Callable | None = None
) -> ProfileRunResult:
    """Estimate exports with QNN's HTP performance estimator: no device, no token."""
    device = resolve_device("estimate")
    qnn = _estimate_qnn(req.qnn)  # local toolchains, checked (not installed) before any export
    return _profile(req, device, progress, export_progress,
                    lambda sources, out, emit: _profile_on_estimator(sources, device, out, qnn, emit))


def run_on_phone(
    req: PhoneRequest, progress: Progress | None = None, export_progress: Callable | None = None
) -> ProfileRunResult:
    """Profile exports on the user's own phone over adb with the user's QAIRT SDK."""
    if req.serial is not None and not req.serial.strip():
        raise UsageError("--serial is empty.", hint="Omit it for the one phone attached, or see `adb devices`.")
    device = resolve_device(f"adb:{req.serial.strip()}" if req.serial else "adb")
    _check_runs(req.runs)
    return _profile(req, device, progress, export_progress,
                    lambda sources, out, emit: _profile_on_phone(sources, device, out, req, emit))


# The `profile` subcommand of each backend that is not AI Hub (for a --device naming one).
_SUBCOMMAND = {Backend.EMULATOR: "emulator", Backend.ADB: "phone", Backend.ESTIMATE: "estimate"}


def _profile_on_hub(
    sources: list[ExportSource],
    device: DeviceTarget,
    out_dir: Path,
    qnn: list[str],
    req: HubRequest,
    config: HubConfig | None,
    emit: Progress,
) -> ProfileRunResult:
    def compiled(s: ExportSource, name: str, work: Path) -> dict:
        """What AI Hub compiles: the export's QDQ, or with native I/O its uint8 NHWC form (the
        graph the export's own binary holds), which the check then feeds its uint8 input."""
        if not s.io:
            return {"model_path": s.model_path}
        return {"model_path": s.native_io_graph(work / name), "io": s.io, "cpu_qdq": s.model_path}

    options = HubOptions(
        runs=req.runs, timeout_s=req.timeout_s, poll_s=req.poll_s, new_jobs=req.new_jobs, retry_failed=req.retry_failed
    )
    session = HubSession(out_dir, options, emit, config=config)
    # The native-I/O graphs live until every upload and the profiles' attribution are done.
    with tempfile.TemporaryDirectory(prefix="swiftformer-qnn-native-io-") as tmp:
        checked = [output_check_files(s) if req.check_outputs else {} for s in sources]  # once for every version
        targets = [
            HubTarget(model=s.model_info, qnn=v, name=name, **compiled(s, name, Path(tmp)), **check)
            for s, name, check in zip(sources, file_labels(sources), checked, strict=True)
            for v in (qnn or [None])
        ]
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
                hint="Drop --qnn, or profile that version on AI Hub.",
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
        with tempfile.TemporaryDirectory(prefix="swiftformer-qnn-native-io-") as tmp:
            model, compiled_from = what.model, what.compiled_from
            if s.io and what.record is None:  # compiled again: the graph the export's binary holds, native I/O too
                model = compiled_from = s.native_io_graph(Path(tmp))
            # The binary's own input: with native I/O, the uint8 NHWC tensor (emulator_feeds).
            profile = profile_on_emulator(model, emulator_feeds(s), s.variant, s.model_info, target, raw_dir,
                                          compiled_from=compiled_from)
        note = f"{profile.provenance.note} Ran {what.describe()}{f', fed {s.fed()}' if s.io else ''}."
        profile = profile.model_copy(update={"provenance": profile.provenance.model_copy(update={"note": note})})
        qnn = profile.toolchain.qnn_version or "unknown"
        stem = profile_stem(label, qnn, profile.target.device)
        final_raw = _keep_raw(raw_dir, out_dir, stem)
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
            work = out_dir / f".{label}.estimate-work"
            shutil.rmtree(work, ignore_errors=True)
            try:
                profile, _ = estimate_export_model(s.model_path, s.variant, s.model_info, work,
                                                   htp_arch=s.soc.htp_arch, stands_for=s.soc.name, qnn=version,
                                                   native_io=bool(s.io))
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)  # nothing half-written is left behind
                raise
            ran = profile.toolchain.qnn_version or "unknown"
            stem = profile_stem(label, ran, profile.target.device)
            write_marker(work, "estimate-raw", f"QNN {ran}'s HTP estimator for {proxy.name} (swiftformer-qnn "
                         f"{__version__}, profile estimate)", device_latency=False)
            final_raw = _keep_raw(work, out_dir, stem)
            path = profile.save(out_dir / f"{stem}.profile.json")
            result.profiled.append(ProfiledModel(f"{label}-qnn{ran}", profile, {"profile": path, "raw": final_raw},
                                                 ran=f"one compile with QNN {ran} for {proxy.name}, no device"))
    return result


def _profile_on_phone(
    sources: list[ExportSource], device: DeviceTarget, out_dir: Path, req: PhoneRequest, emit: Progress
) -> ProfileRunResult:
    from .qnn_net_run import PhoneSession

    result = ProfileRunResult(Backend.ADB, device.display_name, out_dir)
    with PhoneSession.open(device.name, req.qnn_sdk, sources, out_dir, req.runs, emit) as session:
        result.device = f"{session.phone.device_name} ({session.phone.adb.serial})"
        for s, label in zip(sources, file_labels(sources), strict=True):
            got = session.profile(s, label, emulator_feeds(s))
            qnn = short_version(got.profile.toolchain.qnn_version) or "unknown"
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


def _keep_raw(work: Path, out_dir: Path, stem: str) -> Path:
    """Move a run's raw folder (QNN's own outputs) beside its profile, replacing an earlier run's."""
    return keep_raw(work, out_dir / f"{stem}.raw")
