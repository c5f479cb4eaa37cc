"""The export directories `profile` reads: the model each holds, its inputs, its labels, and
the default export (the one `swiftformer-qnn export` makes) when none is given."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import OutputDirError
from ..core.targets import Precision, Soc, get_precision, get_soc
from ..htp.record import CompileRecord, IoTensor
from ..measure.schema import ModelInfo
from ..model.variants import Variant, get_variant
from ..pipeline.artifacts import CPU_QDQ_FILE, FP32_OUTPUTS_FILE, ExportManifest, read_manifest
from ..pipeline.requests import ExportedRequest
from ..pipeline.stage_results import ExportResults

Progress = Callable[[str], None]


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
    # `export --io uint8-nhwc`: the binary's quantized inputs and outputs, as its compile recorded
    # them (`pipeline.native_io`); empty: float NCHW. Whatever runs the export feeds it these.
    io: tuple[IoTensor, ...] = ()

    @property
    def native_input(self) -> IoTensor | None:
        return next((t for t in self.io if t.role == "input"), None)

    def binary_input(self, x):
        """A float NCHW sample (numpy) as the export's binary takes it: itself, or with native
        I/O the uint8 NHWC tensor quantized with the recorded input scale and zero point."""
        feed = self.native_input
        return x if feed is None else feed.from_float(x)

    def fed(self) -> str:
        """What a run feeds a native-I/O binary, for a profile's note."""
        feed = self.native_input
        if feed is None:
            return "its float NCHW input"
        return (f"its native uint8 NHWC input {'x'.join(map(str, feed.shape))} (the sample quantized with the "
                f"recorded scale {feed.scale:.6g} and zero point {feed.zero_point})")

    def native_io_graph(self, work: Path) -> Path:
        """`model_path` rewritten to the binary's native uint8 NHWC I/O (`pipeline.native_io`), in
        `work`: what AI Hub compiles, or the emulator compiles again, for a native-I/O export."""
        from ..pipeline.compile import native_io_model

        Path(work).mkdir(parents=True, exist_ok=True)
        path, spec = native_io_model(self.model_path, Path(work), name=f"{self.model_path.stem}.native-io.onnx")
        if self.io and tuple(spec) != self.io:
            raise OutputDirError(f"{self.directory}: {self.model_path.name} no longer has the input and output "
                                 "quantization its compile recorded.",
                                 hint="Run the same export again: it rebuilds what no longer matches.")
        return path


_EXPORT_HINT = "Pass the directory an export wrote (swiftformer-qnn export), or run the export first."


def read_export(directory: Path) -> ExportSource:
    """The model, variant and precision of one complete export directory."""
    directory = Path(directory)
    if not directory.exists():
        raise OutputDirError(f"{directory} does not exist.", hint=_EXPORT_HINT)
    manifest = read_manifest(directory)
    if manifest is None:
        raise OutputDirError(
            f"{directory} is not a complete export (no manifest.json of swiftformer-qnn).",
            hint=_EXPORT_HINT,
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
    return ExportSource(directory, manifest, variant, precision, soc, model_info, model_path, _io_of(manifest, model_path))


def _io_of(manifest: ExportManifest, model_path: Path) -> tuple[IoTensor, ...]:
    """The native I/O an export's binary has (`--io uint8-nhwc`): its compile record's, or, for an
    export stopped before compiling, what the compile would record for its QDQ graph."""
    if manifest.request.io == "float-nchw":
        return ()
    compiled = manifest.results("compile", CompileRecord)
    if compiled is not None:
        return tuple(compiled.io or ())
    import onnx

    from ..pipeline.native_io import native_io

    try:
        return tuple(native_io(onnx.load(str(model_path))))
    except ValueError as exc:
        raise OutputDirError(f"{model_path}: no native uint8 NHWC I/O can be made of it ({exc}).",
                             hint="Export it again with --io uint8-nhwc and --precision w8a8.") from None


HELDOUT = ("inputs", "heldout.npy")


def output_check_files(source: ExportSource) -> dict[str, Path]:
    """What `profile --check-outputs` compares a phone's outputs with, as `HubTarget` fields.

    `check_inputs`: the export's held-out inputs (`inputs/heldout.npy`, else the verify
    sample). Against fp32: validate's outputs on them (`fp32_outputs`), else the float graph
    that was quantized, run again (`fp32_model`). Against the CPU QDQ: cpu_qdq's outputs
    (`cpu_qdq_outputs`), else `model_path` is run. Saved outputs are used only where the manifest
    records them computed from exactly these inputs (and that QDQ graph); an export stopped
    before those stages, or made by an older version, has its graphs run."""
    m, d = source.manifest, source.directory
    held = next(((stage, name) for stage, name in (HELDOUT, ("verify", "sample_input.npy"))
                 if m.stage(stage) and name in m.stage(stage).outputs), None)
    if held is None:
        raise OutputDirError(f"{d}: the export has no held-out inputs (inputs/heldout.npy).",
                             hint="Re-export it with this version, or profile without --check-outputs.")
    files = {"check_inputs": m.artifact(d, *held)}

    def saved(stage: str, name: str, *made_from: tuple[str, str]) -> Path | None:
        rec = m.stage(stage)
        if held != HELDOUT or rec is None or name not in rec.outputs or not m.computed_from(stage, held, *made_from):
            return None
        return m.artifact(d, stage, name)

    fp32 = saved("validate", FP32_OUTPUTS_FILE)
    if fp32 is not None:
        files["fp32_outputs"] = fp32
    elif (graph := m.float_graph()) is not None:
        files["fp32_model"] = m.artifact(d, *graph)
    qdq = saved("cpu_qdq", CPU_QDQ_FILE, ("quantize", "model.qdq.onnx")) if source.precision.is_quantized else None
    if qdq is not None:
        files["cpu_qdq_outputs"] = qdq
    return files


def emulator_feeds(source: ExportSource) -> dict[str, Any]:
    """One preprocessed held-out input, under the graph's own input name, as the export's binary
    takes it (emulator and phone runs): float NCHW, or with native I/O its uint8 NHWC input."""
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
    return {name: source.binary_input(x.astype(np.float32))}


def default_export(soc: Soc, export_progress: Callable | None) -> Path:
    """The export `swiftformer-qnn export` makes with its defaults, compiled for `soc` (the
    profiled device's chipset): reused when it is there (the stage cache), else made here."""
    from ..pipeline import ExportRequest, run_export

    try:
        return run_export(ExportRequest(soc=soc.name), progress=export_progress).directory
    except OutputDirError as exc:
        raise _for_profile(exc) from None


def _for_profile(exc: OutputDirError) -> OutputDirError:
    """The export's advice, in `profile`'s options: profile takes --from, not --force or --output-dir."""
    if exc.hint and "--force" in exc.hint:
        hint = ("Replace it with `swiftformer-qnn export --force`, or export elsewhere "
                "(swiftformer-qnn export --output-dir DIR) and profile that with --from DIR.")
    else:
        hint = ("Export yourself into a writable place (swiftformer-qnn export --output-dir DIR) "
                "and profile that with --from DIR.")
    return OutputDirError(exc.message, hint=hint)


def file_labels(sources: list[ExportSource]) -> list[str]:
    """The model part of each source's file names, unique among `sources`.

    `<variant>-<precision>`, with the input size when it is not the variant's default
    (`xs-r64-w8a8`, `encoder-d96x32-w8a8`, as the export directories are named) and `-uint8-nhwc`
    for native I/O; two exports
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
        io = f"-{s.manifest.request.io}" if s.io else ""  # -uint8-nhwc: a binary with native I/O
        base.append(f"{s.variant.name}{size}-{s.precision.value}{graph}{io}")
    counts = Counter(base)
    return [b if counts[b] == 1 else f"{b}-{s.manifest.request_key[:8]}" for b, s in zip(base, sources, strict=True)]


def distinct(sources: list[ExportSource], emit: Progress) -> list[ExportSource]:
    """One source per export: two directories holding the same request are the same model."""
    kept: dict[str, ExportSource] = {}
    for s in sources:
        first = kept.setdefault(s.manifest.request_key, s)
        if first is not s:
            emit(f"{s.directory} holds the same export as {first.directory}; profiling it once")
    return list(kept.values())
