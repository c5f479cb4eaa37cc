"""The one orchestrator: export -> simplify -> fold_bn -> inputs -> reference -> validate -> quantize -> guard
-> compile -> estimate -> cpu_qdq -> verify (the reference beside simplify and the fold, quantize beside
validate, the estimate beside the compile).

Each stage reads artifacts and writes new ones through the stage cache (keyed by the hash
of its inputs, options and tool versions), then the artifacts are placed into the output
directory, which is assembled in a temporary sibling and renamed into place at the end.
Stages that do not need each other run at the same time (NEEDS); their wall times overlap.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.atomic import sha256_file, unwritable
from ..core.cache import code_version, sha256_json, tool_versions
from ..core.errors import ExportValidationError, OutputDirError, UsageError, WeightsError
from ..core.heap import release_freed_memory
from ..core.output_dir import Found, Occupant, holds, place, staged_output_dir, tidy
from ..core.targets import CalibrationMethod, Precision, Soc, get_calibration_method, get_precision, get_soc
from ..htp.estimate import ESTIMATOR_SOCS
from ..htp.record import CONTEXT_BINARY
from ..model.variants import Variant, get_variant
from .artifacts import (
    CPU_QDQ_FILE,
    FLOAT_GRAPHS,
    FP32_OUTPUTS_FILE,
    MANIFEST_NAME,
    PYTORCH_OUTPUTS_FILE,
    ExportManifest,
    StageCache,
    StageRecord,
    damaged_outputs,
    holds_export_manifest,
    manifest_files,
    read_manifest,
)
from .images import ImageSet, default_calibration_images, default_heldout_images, find_images
from .requests import (
    CompiledRequest,
    CompileRequest,
    ExportedRequest,
    ExportRequest,
    ImageSetId,
    IoFormat,
    Until,
)
from .stage_results import (
    CpuQdqResults,
    ExportResults,
    FoldResults,
    InputsResults,
    QuantizeResults,
    ReferenceResults,
    SimplifyResults,
    ValidateResults,
    VerifyResults,
)

log = logging.getLogger(__name__)

RANDOM_SEED = 0
MIN_OPSET, MAX_OPSET = 11, 20
# Upper bounds on --resolution: activations (and the block's attention over HxW tokens) grow with its square.
MAX_RESOLUTION, MAX_BLOCK_RESOLUTION = 1024, 256


STAGES_UNTIL = {
    Until.ONNX: ("export", "simplify", "fold_bn", "inputs", "reference", "validate"),
    Until.QUANTIZE: ("export", "simplify", "fold_bn", "inputs", "reference", "validate", "quantize"),
    Until.COMPILE: ("export", "simplify", "fold_bn", "inputs", "reference", "validate", "quantize", "guard",
                    "compile", "estimate"),
    Until.VERIFY: ("export", "simplify", "fold_bn", "inputs", "reference", "validate", "quantize", "guard",
                   "compile", "estimate", "cpu_qdq", "verify"),
}
# What each stage reads from the stages before it, and what it only waits for: the reference waits
# for the export, which is done with the PyTorch models first, and the quantize for the reference,
# so they are gone before the calibration. A stage starts as soon as those are done, so
# stages that do not need each other run at the same time: on 2 cores each of these leaves one
# idle much of its time (the photographs' decoding beside the export; the estimate's compile
# beside the compile and verify). The standalone block's inputs come from a PyTorch model,
# and PyTorch's ONNX exporter is not to share the process with another model's forward: they
# wait for the export.
NEEDS = {
    "export": (),
    "simplify": ("export",),
    "fold_bn": ("simplify",),
    "inputs": (),
    # PyTorch's outputs on the held-out inputs, beside onnxsim and the fold, which keep one core
    # busy: they took validate's PyTorch half out of the calibration's time. In two runs of `nox -s
    # bench` (L1, medians of 5, profiles/reports/bench/nox-bench-2026-12-07T2315.json and T2339),
    # against validate computing them: the cold export 15.37 and 15.72 s against 16.58 and
    # 17.02 s; `--until compile` 10.55 and 11.56 s against 11.41 and 11.62 s (it waits for the
    # reference, which ends 0.4 s after the fold there); the process tree's peak 811-834 MB against
    # 819-832 MB. The PyTorch models go when it ends (`_Run._drop_models`).
    "reference": ("export", "inputs"),
    "validate": ("simplify", "fold_bn", "inputs", "reference"),
    # --precision mixed: every candidate is measured against validate's fp32 outputs; the chosen
    # one is quantized (the others' stages are not run, and a stage waits only for those that are).
    "sensitivity": ("simplify", "fold_bn", "inputs", "validate"),
    "mixed_search": ("sensitivity",),
    # Beside validate, which would otherwise sit on the serial path between the fold and the
    # calibration. After the reference (it ended 0.4 s after the fold in the bench, above), so the
    # PyTorch models are gone before the calibration, the export's peak of memory.
    "quantize": ("simplify", "fold_bn", "inputs", "reference", "sensitivity", "mixed_search"),
    # The BN guard once, read by both compiles: the estimate's (for the estimator's proxy SoC, in a
    # worker process) runs beside the export's own. Nothing after the quantize runs on a graph
    # validate refused: validate ends long before the calibration, so waiting for it costs nothing.
    "guard": ("quantize", "validate"),
    "compile": ("guard",),
    "estimate": ("guard",),
    # Verify's CPU half, beside the compile and estimate workers (which leave part of a core
    # idle) instead of beside the emulator's, which keep both busy. Cold L1 export, against the
    # tree before: 19.2 s against 20.5 s, medians of 6 interleaved pairs, 5 of them faster; in
    # `nox -s bench`, 17.24 s against 17.59 s (medians of 5; 3 runs before: 16.48 against 15.70,
    # within the runs' spread). The process tree's peak: 925.6 MB against 872.4 MB in the first
    # bench, 868.4 against 930.3 MB in the second (the straight-line script's: 976-990 MB).
    "cpu_qdq": ("quantize", "inputs", "validate"),
    "verify": ("validate", "quantize", "guard", "compile", "inputs", "cpu_qdq"),
}
GRAPH_FORMS = ("htp", "faithful")
# Weights without --weights: random, but with trained-like magnitudes (model.realistic_init).
RANDOM_WEIGHTS_ID = f"random-realistic(seed={RANDOM_SEED})"

STAGE_TITLES = {
    "export": "Export PyTorch -> ONNX",
    "simplify": "Simplify with onnxsim",
    "fold_bn": "Fold BatchNorm into neighbouring ops",
    "inputs": "Prepare calibration and held-out inputs",
    "reference": "Run the PyTorch model on the held-out inputs",
    "validate": "Validate ONNX against PyTorch",
    "sensitivity": "Measure each unit's noise on the HTP emulator",
    "mixed_search": "Choose the mixed-precision assignment",
    "quantize": "Quantize to QDQ",
    "guard": "Guard BatchNorms the QNN EP would corrupt",
    "compile": "Compile QNN context binary",
    "estimate": "Estimate accelerator time (QNN Hextimate)",
    "cpu_qdq": "Run the quantized model on the CPU",
    "verify": "Verify fidelity on the HTP emulator",
}


@dataclass
class StageEvent:
    stage: str
    title: str
    status: str  # "start" | "step" (a long stage's progress: `detail`) | "done" | "cached"
    record: StageRecord | None = None
    detail: str = ""  # a few words: which run of a long stage ("taps 1/2", "piece 3/5", "mix 2")


@dataclass
class ExportResult:
    directory: Path
    manifest: ExportManifest
    reused: bool = False  # the output directory already held this exact request
    notes: list[str] = field(default_factory=list)

    def artifact(self, stage: str, output: str) -> Path:
        return self.manifest.artifact(self.directory, stage, output)


ProgressFn = Callable[[StageEvent], None]


@dataclass
class _Resolved:
    variant: Variant
    precision: Precision
    soc: Soc
    calibration_method: CalibrationMethod
    resolution: int
    calibration: ImageSet | None
    heldout: ImageSet
    weights_id: str
    stages: tuple[str, ...]


def _resolve(req: ExportRequest) -> _Resolved:
    """Check every option before any work, so bad input fails in milliseconds."""
    is_block = req.variant.lower().strip() == "encoder"
    variant = get_variant(req.variant, encoder_dim=req.encoder_dim, encoder_hw=req.resolution if is_block else None)
    precision = get_precision(req.precision)
    soc = get_soc(req.soc)
    method = get_calibration_method(req.calibration_method)
    if req.calibration_count < 1 or req.heldout_count < 1:
        raise UsageError("--calibration-count and --heldout-count must be at least 1.")
    if req.resolution is not None and not is_block and (req.resolution < 32 or req.resolution % 32):
        raise UsageError(f"--resolution {req.resolution} is not a multiple of 32 (>= 32).", hint="SwiftFormer downsamples by 32.")
    most = MAX_BLOCK_RESOLUTION if is_block else MAX_RESOLUTION
    if req.resolution is not None and req.resolution > most:
        raise UsageError(f"--resolution {req.resolution} is above {most}, the largest this tool exports "
                         f"({'the block' if is_block else 'a full model'}: memory grows with its square).",
                         hint=f"Use at most {most} (the default is {64 if is_block else 224}).")
    # The TorchScript exporter (dynamo=False, which keeps module paths in node names) stops at 20;
    # below 11 it cannot express SwiftFormer's ops.
    if not MIN_OPSET <= req.opset <= MAX_OPSET:
        raise UsageError(f"--opset {req.opset} is outside {MIN_OPSET}..{MAX_OPSET}.",
                         hint="Use 20 (native Gelu, which the QNN HTP accepts).")
    for option, value in (("--min-sqnr", req.min_sqnr), ("--max-time-ratio", req.max_time_ratio)):
        # NaN compares false with every threshold (a verify that passes anything) and neither
        # NaN nor inf survives the manifest's JSON (it records null): both refused before any work.
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{option} {value:g} is not a finite number.", hint=f"Give {option} a number, e.g. "
                             f"{'30' if option == '--min-sqnr' else '1.4'}.")
    if req.graph not in GRAPH_FORMS:
        raise UsageError(f"Unknown graph form {req.graph!r}.", hint=f"Use one of: {', '.join(GRAPH_FORMS)}.")
    if req.io not in [f.value for f in IoFormat]:
        raise UsageError(f"Unknown --io {req.io!r}.", hint=f"Use one of: {', '.join(f.value for f in IoFormat)}.")
    if req.io == IoFormat.UINT8_NHWC.value and precision is not Precision.W8A8:
        raise UsageError(f"--io {req.io} needs --precision w8a8 (the binary's inputs and outputs are its uint8 tensors).",
                         hint="Use --precision w8a8, or the default --io float-nchw.")
    if req.attention is not None and req.attention not in ("normalize", "softmax"):
        raise UsageError(f"Unknown attention form {req.attention!r}.", hint="Use normalize or softmax.")
    if req.weights is not None:
        w = Path(req.weights)
        if w.is_dir():
            raise WeightsError(f"{w} is a directory, not a checkpoint file.",
                               hint="Pass the path of a .pth/.safetensors/.bin file (e.g. <dir>/model.safetensors).")
        if not w.is_file():
            raise WeightsError(f"Weights file {w} does not exist.", hint="Pass the path of a .pth/.safetensors/.bin checkpoint.")
        weights_id = "sha256:" + sha256_file(w)
        from ..model.weights import check_checkpoint

        check_checkpoint(w, variant, req.attention)  # a junk file says so before any output folder is looked at
    else:
        weights_id = RANDOM_WEIGHTS_ID
    stages = STAGES_UNTIL[Until(req.until)]
    _check_mixed(req, precision)
    if precision is Precision.MIXED:
        # Measured on the compiled binary before the choice is quantized (pipeline.mixed).
        i = stages.index("quantize")
        stages = stages[:i] + ("sensitivity", "mixed_search") + stages[i:]
    if req.graph == "faithful":
        # The literal graph keeps its BatchNorms; the guard stage rewrites or refuses
        # any the QNN EP would corrupt.
        stages = tuple(s for s in stages if s != "fold_bn")
    if soc.htp_arch not in ESTIMATOR_SOCS:
        # QNN's performance estimator runs for no SoC of this architecture: nothing to estimate.
        stages = tuple(s for s in stages if s != "estimate")
    if variant.is_encoder_block:
        from .calibrate import encoder_host

        encoder_host(variant.encoder_dim)  # no stage this wide: no real activations; say so before any work
    resolution = variant.encoder_hw if variant.is_encoder_block else (req.resolution or 224)
    needs_calibration = "quantize" in stages and precision.is_quantized
    if method is not CalibrationMethod.MINMAX and not needs_calibration:
        why = "--precision fp16" if not precision.is_quantized else f"--until {Until(req.until).value}"
        raise UsageError(f"--calibration-method {method.value} chooses quantization ranges, and {why} quantizes nothing.",
                         hint="Drop --calibration-method, or quantize (--precision w8a8, w8a16 or mixed; --until "
                              "quantize or later).")
    calibration = (
        find_images(req.calibration or default_calibration_images(), req.calibration_count, what="calibration")
        if needs_calibration else None
    )
    heldout = find_images(req.heldout or default_heldout_images(), req.heldout_count, what="held-out")
    return _Resolved(variant, precision, soc, method, resolution, calibration, heldout, weights_id, stages)


def _check_mixed(req: ExportRequest, precision: Precision) -> None:
    """The mixed-precision options, before any work."""
    if req.max_time_ratio is not None and precision is not Precision.MIXED:
        raise UsageError("--max-time-ratio is a target of --precision mixed.",
                         hint="Add --precision mixed, or drop --max-time-ratio.")
    if precision is not Precision.MIXED:
        return
    if req.until in (Until.ONNX, Until.QUANTIZE):
        raise UsageError(f"--precision mixed measures each block on the compiled binary on the HTP emulator, "
                         f"which --until {Until(req.until).value} stops before.",
                         hint="Drop --until (or use --until compile), or choose --precision w8a8 or w8a16.")
    if req.max_time_ratio is not None and req.min_sqnr is not None:
        raise UsageError("--min-sqnr and --max-time-ratio are two targets for one choice.",
                         hint="Give one: the cheapest assignment at or above an SQNR, or the most faithful within a time ratio.")
    if req.max_time_ratio is not None and not req.max_time_ratio >= 1.0:
        raise UsageError(f"--max-time-ratio {req.max_time_ratio:g} is below 1: no assignment is faster than uniform w8a8.",
                         hint="Use a ratio of at least 1: 1 is uniform w8a8's estimated time; a mixed export's Pareto table shows uniform w8a16's.")


def default_output_dir(req: ExportRequest, r: _Resolved) -> Path:
    """`build/NAME`, NAME naming every option that makes this request differ from the default one,
    so the documented examples land in folders of their own (the rule, written once; docs/export.md
    quotes it):

    `<variant>[-r<size> | -d<dim>x<size>]-<precision>-<soc>`, then, only when not the default:
    `-faithful` (--graph), `-uint8-nhwc` (--io), `-w-<checkpoint file stem>` (--weights), `-<attention>` (--attention),
    `-cal-<folder name>` / `-cal<count>` (--calibration / --calibration-count), `-calib-<method>`
    (--calibration-method), `-held-<folder name>` /
    `-held<count>` (--heldout / --heldout-count), `-sqnr<dB>` (--min-sqnr), `-ratio<R>` (--max-time-ratio),
    `-opset<N>` (--opset),
    `-until-<stage>` (--until).
    """
    parts = [r.variant.name, r.precision.value, r.soc.name]
    if r.variant.is_encoder_block:
        parts.insert(1, f"d{r.variant.encoder_dim}x{r.resolution}")
    elif r.resolution != 224:
        parts.insert(1, f"r{r.resolution}")
    if req.graph != "htp":
        parts.append(req.graph)
    if req.io != IoFormat.FLOAT_NCHW.value:
        parts.append(req.io)
    if req.weights is not None:
        parts.append(f"w-{_slug(Path(req.weights).stem)}")
    if req.attention is not None:
        parts.append(req.attention)
    defaults = ExportRequest()
    for option, folder, count, default_count in (("cal", req.calibration, req.calibration_count, defaults.calibration_count),
                                                 ("held", req.heldout, req.heldout_count, defaults.heldout_count)):
        if folder is not None:
            parts.append(f"{option}-{_slug(Path(folder).resolve().name)}")
        if count != default_count:
            parts.append(f"{option}{count}")
        if option == "cal" and r.calibration_method is not CalibrationMethod.MINMAX:
            parts.append(f"calib-{r.calibration_method.value}")
    if req.min_sqnr is not None:
        parts.append(f"sqnr{req.min_sqnr:g}")
    if req.max_time_ratio is not None:
        parts.append(f"ratio{req.max_time_ratio:g}")
    if req.opset != defaults.opset:
        parts.append(f"opset{req.opset}")
    if req.until is not Until.VERIFY:
        parts.append(f"until-{Until(req.until).value}")
    return Path("build") / "-".join(parts)


def _slug(name: str) -> str:
    """A file or folder name as a part of a folder name: letters, digits, `.`, `_` and `-` only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:40] or "x"


def run_export(req: ExportRequest, progress: ProgressFn | None = None) -> ExportResult:
    """Run (or reuse) the pipeline for one request and return the finished output directory."""
    started = time.perf_counter()
    r = _resolve(req)
    emit = progress or (lambda _e: None)
    request = ExportedRequest(
        variant=r.variant.name,
        input_shape=list(r.variant.input_shape(r.resolution)),
        precision=r.precision.value,
        soc=r.soc.name,
        soc_model=r.soc.soc_model,
        htp_arch=r.soc.htp_arch,
        weights=r.weights_id,
        weights_path=str(req.weights) if req.weights else None,
        attention_requested=req.attention,
        opset=req.opset,
        graph=req.graph,
        io=req.io,
        until=req.until,
        calibration=_image_set_id(r.calibration),
        calibration_method=r.calibration_method.value,
        heldout=_image_set_id(r.heldout),
        min_sqnr=req.min_sqnr,
        max_time_ratio=req.max_time_ratio,
    )
    target = Path(req.output_dir) if req.output_dir else default_output_dir(req, r)
    ctx = _Run(req, r, StageCache(enabled=req.use_cache), emit)
    return _assemble(
        target, request, force=req.force, started=started, what="export",
        run_stages=lambda work: ctx.run_stages(work),
    )


def _assemble(
    target: Path,
    request: ExportedRequest | CompiledRequest,
    *,
    force: bool,
    started: float,
    what: str,
    run_stages: Callable[[Path], list[StageRecord]],
    reads: Sequence[Path] = (),
) -> ExportResult:
    """The output directory of a request: reused when it already holds the same request (same
    options, inputs, tool versions and code) and every file still has the hash its manifest
    records; otherwise built by `run_stages` beside its final place and renamed into it, under
    the ownership rule of `output_dir` (another request's output needs `force`; anything
    this tool did not make is never replaced). A directory that holds, among the files it would
    replace, one this run `reads` is refused even with `force`: the run would delete its own
    input (`compile build/x/model.qdq.onnx --output-dir build/x --force`)."""
    tools = tool_versions()
    request_key = sha256_json({"request": request.key_fields(), "tools": tools, "code": code_version()})
    existing = read_manifest(target)
    notes: list[str] = []
    damaged: list[str] = []
    if existing is not None and existing.request_key == request_key and existing.status == "complete":
        damaged = damaged_outputs(target, existing)
        if not damaged:
            tidy(target)  # what a killed run left beside it (its .partial directory), reused or not
            return ExportResult(target, existing, reused=True, notes=_stage_notes(existing))

    def inspect(directory: Path) -> Found:
        # The directory is the tool's only for the files its manifest lists: the rest is the
        # user's and is carried into the rebuilt directory (output_dir.carry_over).
        found = read_manifest(directory)
        owned = manifest_files(directory)
        if found is None:
            if holds_export_manifest(directory):  # an earlier version's format: still ours, so --force replaces it
                _refuse_replacing_inputs(directory, owned, reads, what)
                return Found(Occupant.OURS, "an output made by another swiftformer-qnn version "
                                            "(a manifest this version does not read)", owned)
            return Found(Occupant.FOREIGN, holds(directory))
        if found.request_key == request_key:
            return Found(Occupant.SAME, owned=owned)
        _refuse_replacing_inputs(directory, owned, reads, what)
        if found.request == request:
            return Found(Occupant.OURS, f"this {what} made by other code or tool versions "
                                        "(torch, onnxruntime, QNN, swiftformer-qnn)", owned)
        theirs = "compile" if isinstance(found.request, CompiledRequest) else "export"
        return Found(Occupant.OURS, f"{_a(theirs)} of a different request", owned)

    _check_writable(target)
    kept: list[str] = []
    with staged_output_dir(target, force=force, inspect=inspect, kept=kept) as work:
        records = run_stages(work)
        manifest = ExportManifest(
            request_key=request_key, request=request, tools=tools, stages=records,
            wall_s=round(time.perf_counter() - started, 3),
        )
        (work / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    if damaged:
        notes.append(f"{target} held this {what}, but {_some(damaged, '; ')}: rebuilt its "
                     f"{len(manifest.files())} files from the stage cache or anew.")
    if kept:
        notes.append(f"Kept {len(kept)} file{'s' if len(kept) != 1 else ''} in {target} that the {what} did not "
                     f"write: {_some(kept, ', ')}.")
    return ExportResult(target, manifest, notes=notes + _stage_notes(manifest))


def _refuse_replacing_inputs(directory: Path, owned: frozenset[str] | None, reads: Sequence[Path], what: str) -> None:
    """OutputDirError when replacing `directory` would delete a file this run reads: one its
    manifest lists (`owned`; None: every file in it), which the replace does not carry over."""
    root = directory.resolve()
    for path in reads:
        try:
            inside = Path(path).resolve().relative_to(root).as_posix()
        except ValueError:
            continue
        if owned is None or inside in owned:
            raise OutputDirError(
                f"{directory} holds {inside}, this {what}'s input: replacing the folder would delete it.",
                hint="Choose another --output-dir (the default is beside the input).")


def _some(items: list[str], sep: str, shown: int = 3) -> str:
    return sep.join(items[:shown]) + (f"{sep}... ({len(items)} in all)" if len(items) > shown else "")


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _place_outputs(rec: StageRecord, cache_dir: Path, work: Path) -> None:
    for out in rec.outputs.values():
        place(cache_dir / out.path, work / out.path)


def run_stage(name: str, work: Path, emit: ProgressFn,
              cached: Callable[[], tuple[StageRecord, Path]]) -> tuple[StageRecord, Path]:
    """One stage through the cache (`cached`), its outputs placed into `work`, its progress told."""
    emit(StageEvent(name, STAGE_TITLES[name], "start"))
    rec, d = cached()
    release_freed_memory()
    _place_outputs(rec, d, work)
    emit(StageEvent(name, STAGE_TITLES[name], "cached" if rec.cached else "done", rec))
    return rec, d


def _stage_notes(manifest: ExportManifest) -> list[str]:
    """Notes the stages recorded (weights format, attention form, calibration source), in order."""
    notes = [n for s in manifest.stages for n in getattr(s.results, "notes", [])]
    return list(dict.fromkeys(notes))


def _image_set_id(images: ImageSet | None) -> ImageSetId | None:
    if images is None:
        return None
    return ImageSetId(root=str(images.root), count=len(images.files), sha256=images.fingerprint(),
                      skipped=len(images.skipped))


def _check_writable(target: Path) -> None:
    why = unwritable(target)
    if why is not None:
        raise OutputDirError(f"Cannot write {target}: {why}.", hint="Choose a writable place with --output-dir.")


class _Run:
    """State of one pipeline run: the lazily built PyTorch model and the stage results."""

    def __init__(self, req: ExportRequest, r: _Resolved, cache: StageCache, emit: ProgressFn):
        self.req, self.r, self.cache, self.emit = req, r, cache, emit
        self.records: dict[str, StageRecord] = {}
        self.dirs: dict[str, Path] = {}
        self.notes: list[str] = []
        self._model = None
        self._host = None
        self._building = threading.Lock()  # stages run in threads (run_stages); each model is built once
        # When the compile's and estimate's workers may start (`_workers_ahead`), with validate's record:
        self._began: set[str] = set()  # the stages begun
        self._failed = False  # a stage failed: the export ends, nothing more is started
        self._scheduling = threading.Lock()
        self.attention = req.attention or "normalize"
        self.weights_info: dict[str, Any] = {"source": r.weights_id}

    # --- the PyTorch side, built only when a stage misses the cache -------------------
    def model(self):
        with self._building:
            return self._build_model()

    def _build_model(self):
        if "reference" in self.records:  # a stage after it would rebuild the model and its memory
            raise RuntimeError("a stage asked for the PyTorch model after the reference dropped it")
        if self._model is None:
            import torch

            from ..model.swiftformer import build_model, realistic_init

            torch.manual_seed(RANDOM_SEED)
            model = build_model(self.r.variant, self.attention)
            if self.req.weights is None:
                realistic_init(model, seed=RANDOM_SEED)
            else:
                from ..model.weights import load_weights

                # load_weights sets the attention form: the requested one, else what the format implies.
                loaded = load_weights(model, Path(self.req.weights), self.r.variant, self.req.attention,
                                      sha256=self.r.weights_id.removeprefix("sha256:"))
                self.attention = loaded.effective_attention.value
                self.weights_info.update({"format": loaded.format.value, "sha256": loaded.sha256,
                                          "implied_attention": loaded.implied_attention.value,
                                          "effective_attention": loaded.effective_attention.value})
                self.notes.extend(loaded.notes)
            self._model = model.eval()
        return self._model

    def host_model(self):
        """The full SwiftFormer whose activations feed the standalone block's calibration."""
        with self._building:
            return self._build_host()

    def _build_host(self):
        if "reference" in self.records:  # a stage after it would rebuild the model and its memory
            raise RuntimeError("a stage asked for the PyTorch model after the reference dropped it")
        if self._host is None:
            import torch

            from ..model.swiftformer import build_model, realistic_init
            from .calibrate import encoder_host

            host = encoder_host(self.r.variant.encoder_dim)
            torch.manual_seed(RANDOM_SEED)
            # The requested form, else normalize; load_weights below sets a full checkpoint's own.
            # (Not self.attention: that depends on whether the export stage was a cache hit.)
            model = build_model(host.variant, self.req.attention or "normalize")
            realistic_init(model, seed=RANDOM_SEED)  # replaced below by a full checkpoint's weights
            if self.req.weights is not None:
                from ..model.weights import is_full_checkpoint, load_weights

                if is_full_checkpoint(Path(self.req.weights)):
                    load_weights(model, Path(self.req.weights), host.variant, self.req.attention)
                    self.notes.append(f"Calibration activations come from {host.variant.title} with the given weights.")
                else:
                    self.notes.append(f"The weights hold only the block: calibration activations come from a "
                                      f"randomly initialised {host.variant.title} (realistic magnitudes, seed {RANDOM_SEED}).")
            self._host = (host, model.eval())
        return self._host

    # --- stages -----------------------------------------------------------------------
    def _cached(self, name: str, **kwargs):
        return self.cache.run(name, **kwargs)

    def _inputs_of(self, *names: tuple[str, str]) -> dict[str, str]:
        return {f"{s}/{o}": self.records[s].outputs[o].sha256 for s, o in names}

    def _path(self, stage: str, output: str) -> Path:
        return self.dirs[stage] / self.records[stage].outputs[output].path

    def run_stages(self, work: Path) -> list[StageRecord]:
        """Every stage of the request, each once what it needs (NEEDS) is done; the records in
        stage order. A failure is the earliest stage's, as if they ran one after another; the
        stages already running finish first (nothing writes into the output after it is gone)."""
        from concurrent.futures import Future, ThreadPoolExecutor

        names = self.r.stages
        needs = dict(NEEDS)
        if self.r.variant.is_encoder_block:
            needs["inputs"] = ("export",)
        futures: dict[str, Future] = {}

        def run(name: str) -> StageRecord:
            for before in needs[name]:
                if before in futures:
                    futures[before].result()
            return self.run_stage(name, work)

        pool = ThreadPoolExecutor(len(names), thread_name_prefix="stage")
        try:
            for name in names:  # in stage order: what a stage waits for is submitted before it
                futures[name] = pool.submit(run, name)
            return [futures[name].result() for name in names]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            from ..htp.workers import discard_ahead

            for command in ("compile", "estimate"):  # a stage found in the cache, or a failure, took none
                discard_ahead(command)

    def run_stage(self, name: str, work: Path) -> StageRecord:
        with self._scheduling:
            self._began.add(name)
        if name == "quantize":
            self._workers_ahead()
        try:
            rec, d = run_stage(name, work, self.emit, getattr(self, f"_stage_{name}"))
        except BaseException:
            with self._scheduling:
                self._failed = True
            raise
        self.records[name], self.dirs[name] = rec, d
        if name in ("compile", "estimate"):
            from ..htp.workers import discard_ahead

            # Found in the cache, the stage took no worker: it would wait through verify, the
            # export's peak of memory.
            discard_ahead(name)
        if name == "reference":
            # Found in the cache too: the models the export or the block's inputs built go now.
            self._drop_models()
        if name == "validate":
            self._workers_ahead()
        return rec

    def _drop_models(self) -> None:
        """The PyTorch models go once the reference is computed: it is the last stage that runs
        PyTorch (the export, the block's inputs and the reference need it; the reference waits for
        both), and the calibration after it and verify are the export's peaks of memory."""
        with self._building:
            self._model = self._host = None
        release_freed_memory()

    def _workers_ahead(self) -> None:
        """Start the compile's and the estimate's worker processes once quantize has begun and
        validate is done, unless their stage has begun: their start-up beside the rest of the
        quantize, not inside those two stages, which start together; not beside validate and the
        calibration together, the export's peak of memory (each waiting worker holds ~40 MB, L1);
        not while a mixed search, which starts its own, runs; and not once a stage has failed.
        Verify's emulator workers are not started ahead: beside the calibration they made the
        cold L1 export slower (38.4-40.8 s against 36.6-37.2 s, 3 interleaved pairs): both cores
        are busy."""
        from ..htp.workers import start_ahead

        with self._scheduling:
            if self._failed or "quantize" not in self._began or "validate" not in self.records:
                return
            for command in ("compile", "estimate"):
                if command in self.r.stages and command not in self._began:
                    start_ahead(command)  # a second call finds it waiting

    def _model_options(self) -> dict[str, Any]:
        """What the PyTorch model is: the export's and the reference's cache keys hold it."""
        r = self.r
        return {"variant": r.variant.name, "encoder_dim": r.variant.encoder_dim, "weights": r.weights_id,
                "attention": self.req.attention, "seed": RANDOM_SEED,
                "init": "realistic" if self.req.weights is None else None, "torch": tool_versions(("torch",))["torch"]}

    def _stage_export(self):
        from .onnx_export import export_onnx

        r = self.r
        shape = r.variant.input_shape(r.resolution)
        options = self._model_options() | {"input_shape": list(shape), "opset": self.req.opset, "graph": self.req.graph}

        def produce(d: Path) -> ExportResults:
            model = self.model()
            if self.req.graph == "htp":
                from ..model.htp_form import to_htp_form

                # Built from the loaded upstream-form model: one weights loader, the same weights.
                model = to_htp_form(model, shape)
            res = export_onnx(model, shape, d / "model.onnx", is_encoder_block=r.variant.is_encoder_block,
                              opset=self.req.opset)
            return ExportResults(**res, attention=self.attention, graph=self.req.graph,
                                 weights=dict(self.weights_info), notes=list(self.notes))

        return self._cached("export", options=options, inputs={}, produce=produce, outputs=("model.onnx",))

    def _stage_simplify(self):
        from .onnx_export import simplify_onnx

        src = self._path("export", "model.onnx")
        return self._cached(
            "simplify", options={"onnxsim": tool_versions(("onnxsim",))["onnxsim"]},
            inputs=self._inputs_of(("export", "model.onnx")),
            produce=lambda d: SimplifyResults(**simplify_onnx(src, d / "model.sim.onnx")), outputs=("model.sim.onnx",),
        )

    def _stage_fold_bn(self):
        from .fold_bn import fold_stage

        src = self._path("simplify", "model.sim.onnx")
        return self._cached(
            "fold_bn", options={}, inputs=self._inputs_of(("simplify", "model.sim.onnx")),
            produce=lambda d: FoldResults(**fold_stage(src, d / "model.fold.onnx")), outputs=("model.fold.onnx",),
        )

    def _float_graph(self) -> tuple[str, str]:
        """The float graph that gets quantized: BatchNorm folded unless the graph is faithful."""
        return next(graph for graph in FLOAT_GRAPHS if graph[0] in self.records)

    def _stage_inputs(self):
        from .calibrate import encoder_host, make_inputs

        r = self.r
        outputs = ("heldout.npy",) + (("calibration.npy",) if r.calibration else ())
        options = {"variant": r.variant.name, "encoder_dim": r.variant.encoder_dim, "resolution": r.resolution,
                   "calibration": _image_set_id(r.calibration), "heldout": _image_set_id(r.heldout)}
        if r.variant.is_encoder_block:
            host = encoder_host(r.variant.encoder_dim)
            options["host"] = {"module": host.describe(), "weights": r.weights_id, "attention": self.req.attention}

        def produce(d: Path) -> InputsResults:
            kw = {}
            if r.variant.is_encoder_block:
                host, model = self.host_model()
                kw = {"host": host, "host_model": model}
            res = {"heldout": make_inputs(r.variant, r.resolution, r.heldout, d / "heldout.npy", **kw)}
            if r.calibration:
                res["calibration"] = make_inputs(r.variant, r.resolution, r.calibration, d / "calibration.npy", **kw)
            notes = [s.shortfall(what) for s, what in ((r.calibration, "calibration"), (r.heldout, "held-out")) if s]
            if r.variant.is_encoder_block:
                notes += [n for n in self.notes if n.startswith(("Calibration activations", "The weights hold"))]
            res["notes"] = [n for n in notes if n]
            return InputsResults.model_validate(res)

        return self._cached("inputs", options=options, inputs={}, produce=produce, outputs=outputs)

    def _stage_reference(self):
        import numpy as np

        from .validate import torch_outputs

        heldout_path = self._path("inputs", "heldout.npy")

        def produce(d: Path) -> ReferenceResults:
            outputs = torch_outputs(self.model(), np.load(heldout_path))
            np.save(d / PYTORCH_OUTPUTS_FILE, outputs)
            return ReferenceResults(samples=outputs.shape[0], output_shape=list(outputs.shape[1:]))

        return self._cached(
            "reference", options=self._model_options(),
            inputs=self._inputs_of(("inputs", "heldout.npy")), produce=produce, outputs=(PYTORCH_OUTPUTS_FILE,),
        )

    def _stage_validate(self):
        import numpy as np

        from .validate import validate_onnx

        sim = self._path("simplify", "model.sim.onnx")
        graph = self._float_graph()
        float_graph = self._path(*graph)
        heldout_path = self._path("inputs", "heldout.npy")
        reference_path = self._path("reference", PYTORCH_OUTPUTS_FILE)

        def produce(d: Path) -> ValidateResults:
            from ..measure.agreement import run_cpu

            heldout, reference = np.load(heldout_path), np.load(reference_path)
            got = run_cpu(float_graph, heldout)
            try:
                figures, fp32 = validate_onnx(float_graph, reference, heldout, self.r.variant, got=got)
            except ExportValidationError as exc:
                if float_graph == sim:
                    raise
                # Only a failure needs the simplified graph it came from: it says which step
                # (the export and onnxsim, or the BatchNorm fold) introduced the mismatch.
                try:
                    validate_onnx(sim, reference, heldout, self.r.variant)
                except ExportValidationError:
                    raise exc from None
                raise ExportValidationError(
                    f"{exc.message} The simplified graph before the BatchNorm fold matches PyTorch: "
                    "the fold introduced it.", hint="Export with --graph faithful and report a bug.") from None
            figures["graph"] = graph[1]
            np.save(d / FP32_OUTPUTS_FILE, fp32)  # the float reference the verify stage compares with
            return ValidateResults.model_validate(figures)

        return self._cached(
            "validate", options={"variant": self.r.variant.name,
                                 "onnxruntime": tool_versions(("onnxruntime",))["onnxruntime"]},
            inputs=self._inputs_of(("simplify", "model.sim.onnx"), graph, ("inputs", "heldout.npy"),
                                   ("reference", PYTORCH_OUTPUTS_FILE)),
            produce=produce, outputs=(FP32_OUTPUTS_FILE,),
        )

    def _stage_quantize(self):
        import numpy as np

        from .quantize import passthrough_float, quantize_qdq

        graph = self._float_graph()
        src = self._path(*graph)
        precision, method = self.r.precision, self.r.calibration_method
        extra: dict = {}
        if precision is Precision.MIXED:
            # The ranges every measured candidate was quantized with: the binary verified is the one chosen.
            ranges = self._path("sensitivity", "ranges.json")
            sixteen = self.records["mixed_search"].results.chosen.sixteen
            produce = lambda d: QuantizeResults(  # noqa: E731
                **quantize_qdq(src, None, d / "model.qdq.onnx", precision, sixteen_bit_units=sixteen,
                               variant=self.r.variant, ranges=ranges, calibration_method=method),
                sixteen_bit_units=sixteen)
            inputs = self._inputs_of(graph, ("inputs", "calibration.npy"), ("sensitivity", "ranges.json"))
            extra = {"sixteen_bit_units": sixteen}
        elif precision.is_quantized:
            calib = self._path("inputs", "calibration.npy")
            produce = lambda d: QuantizeResults(  # noqa: E731
                **quantize_qdq(src, np.load(calib), d / "model.qdq.onnx", precision, calibration_method=method))
            inputs = self._inputs_of(graph, ("inputs", "calibration.npy"))
        else:
            produce = lambda d: QuantizeResults(**passthrough_float(src, d / "model.qdq.onnx"))  # noqa: E731
            inputs = self._inputs_of(graph)
        options = {"precision": precision.value, "per_channel": True,
                   "onnxruntime": tool_versions(("onnxruntime",))["onnxruntime"], **extra}
        if precision.is_quantized:
            options["calibration_method"] = method.value
        return self._cached("quantize", options=options, inputs=inputs, produce=produce, outputs=("model.qdq.onnx",))

    def _mixed_bench(self, work: Path, ranges: Path):
        import numpy as np

        from .mixed import make_bench

        r = self.r
        return make_bench(
            self._path(*self._float_graph()), np.load(self._path("inputs", "calibration.npy")),
            np.load(self._path("inputs", "heldout.npy")), np.load(self._path("validate", FP32_OUTPUTS_FILE)),
            variant=r.variant, target=self.htp_target(), soc=r.soc.name, work=work, ranges=ranges)

    def _mixed_inputs(self) -> dict[str, str]:
        return self._inputs_of(self._float_graph(), ("inputs", "calibration.npy"), ("inputs", "heldout.npy"),
                               ("validate", FP32_OUTPUTS_FILE))

    def _stage_sensitivity(self):
        import numpy as np

        from .mixed import SENSITIVITY_METHOD, SENSITIVITY_SAMPLES, measure_sensitivity
        from .quantize import calibrate

        method = self.r.calibration_method

        def produce(d: Path):
            # The ranges every candidate shares, by the chosen method, before the first candidate
            # (which would otherwise calibrate them itself, by MinMax).
            calibrate(self._path(*self._float_graph()), np.load(self._path("inputs", "calibration.npy")),
                      {method: d / "ranges.json"}, Precision.MIXED)
            with tempfile.TemporaryDirectory() as tmp:
                bench, unplaced = self._mixed_bench(Path(tmp), d / "ranges.json")
                return measure_sensitivity(bench, unplaced, progress=self._steps("sensitivity"))

        options = {"variant": self.r.variant.name, "soc": self.r.soc.name, "samples": SENSITIVITY_SAMPLES,
                   "method": SENSITIVITY_METHOD,
                   "per_channel": True, "calibration_method": method.value,
                   **tool_versions(("onnxruntime", "onnxruntime-qnn"))}
        return self._cached("sensitivity", options=options, inputs=self._mixed_inputs(), produce=produce,
                            outputs=("ranges.json",))

    def _stage_mixed_search(self):
        from .mixed import search
        from .mixed_search import Target

        target = Target(min_sqnr_db=self.req.min_sqnr, max_cost_ratio=self.req.max_time_ratio)
        ranges = self._path("sensitivity", "ranges.json")
        sensitivity = self.records["sensitivity"].results

        def produce(_d: Path):
            with tempfile.TemporaryDirectory() as tmp:
                bench, _ = self._mixed_bench(Path(tmp), ranges)
                return search(bench, sensitivity, target, progress=self._steps("mixed_search"))

        options = {"min_sqnr": target.min_sqnr_db, "max_time_ratio": target.max_cost_ratio,
                   "sensitivity": self.records["sensitivity"].key}
        return self._cached("mixed_search", options=options,
                            inputs={**self._mixed_inputs(), **self._inputs_of(("sensitivity", "ranges.json"))},
                            produce=produce)

    def _steps(self, stage: str) -> Callable[[str], None]:
        """Progress inside a long stage (the mixed-precision measurements: minutes on L1)."""
        return lambda detail: self.emit(StageEvent(stage, STAGE_TITLES[stage], "step", detail=detail))

    def htp_target(self):
        from ..htp.session import HtpTarget

        return HtpTarget(self.r.soc.soc_model, self.r.soc.htp_arch, fp16=self.r.precision is Precision.FP16)

    def subject(self):
        from ..htp.record import CompiledModel

        r = self.r
        return CompiledModel(variant=r.variant.name, precision=r.precision.value,
                             input_shape=list(r.variant.input_shape(r.resolution)))

    def _stage_guard(self):
        from .compile import GUARD_OUTPUTS, guard_stage

        qdq = self._path("quantize", "model.qdq.onnx")
        return self._cached("guard", options={}, inputs=self._inputs_of(("quantize", "model.qdq.onnx")),
                            produce=lambda d: guard_stage(qdq, d), outputs=GUARD_OUTPUTS)

    def _stage_compile(self):
        from .compile import COMPILE_OUTPUTS, GUARDED_MODEL, compile_options, compile_stage

        guarded, guard = self._path("guard", GUARDED_MODEL), self.records["guard"].results
        target, soc, subject = self.htp_target(), self.r.soc.name, self.subject()
        io = IoFormat(self.req.io)
        return self._cached(
            "compile", options=compile_options(target, soc, subject) | {"io": io.value, "bn_guard": guard.model_dump()},
            inputs=self._inputs_of(("guard", GUARDED_MODEL)),
            produce=lambda d: compile_stage(guarded, d, target, soc=soc, subject=subject, guard=guard, io=io),
            outputs=COMPILE_OUTPUTS,
        )

    def _stage_estimate(self):
        """The guard stage's graph (what the compile stage compiles) estimated by QNN's HTP
        estimator for the proxy SoC of the target's architecture: one more compile, in a worker,
        no device. Keeps `estimate.json` (every op's share of the critical path)."""
        import shutil

        from ..htp.estimate import ESTIMATE_JSON, estimate_model, estimator_soc
        from .compile import GUARDED_MODEL, native_io_model
        from .stage_results import EstimateResults

        r = self.r
        guarded = self._path("guard", GUARDED_MODEL)
        proxy = estimator_soc(r.soc.htp_arch)

        io = IoFormat(self.req.io)

        def produce(d: Path) -> EstimateResults:
            with tempfile.TemporaryDirectory() as tmp:
                compiled = guarded
                if io is IoFormat.UINT8_NHWC:  # the graph the compile stage compiled: native I/O too
                    compiled, _ = native_io_model(compiled, Path(tmp))
                est = estimate_model(compiled, Path(tmp) / "work", htp_arch=r.soc.htp_arch, soc_model=proxy.soc_model,
                                     stands_for=r.soc.name, fp16=r.precision is Precision.FP16)
                shutil.copyfile(Path(tmp) / "work" / ESTIMATE_JSON, d / ESTIMATE_JSON)
            return EstimateResults(
                label=est.label, qnn_version=est.qnn_version, proxy_soc=est.proxy_soc, proxy_soc_model=est.soc_model,
                us=est.us, us_lower=est.us_lower, us_upper=est.us_upper, us_converted=est.us_converted,
                cycles=est.cycles, missing_ops=est.missing_ops, input_fill_bytes=est.input_fill_bytes,
                traced_ops=len(est.ops), unmapped_share=est.unmapped_share)

        return self._cached(
            "estimate", options={"proxy_soc_model": proxy.soc_model, "htp_arch": r.soc.htp_arch, "io": io.value,
                                 "stands_for": r.soc.name, "precision": r.precision.value,
                                 **tool_versions(("onnxruntime", "onnxruntime-qnn"))},
            inputs=self._inputs_of(("guard", GUARDED_MODEL)), produce=produce, outputs=(ESTIMATE_JSON,),
        )

    def _stage_cpu_qdq(self):
        import numpy as np

        from .verify import quantized_on_cpu

        qdq = self._path("quantize", "model.qdq.onnx")
        heldout_path = self._path("inputs", "heldout.npy")
        return self._cached(
            "cpu_qdq", options={"onnxruntime": tool_versions(("onnxruntime",))["onnxruntime"]},
            inputs=self._inputs_of(("quantize", "model.qdq.onnx"), ("inputs", "heldout.npy")),
            produce=lambda d: CpuQdqResults(**quantized_on_cpu(qdq, np.load(heldout_path), d / CPU_QDQ_FILE)),
            outputs=(CPU_QDQ_FILE,),
        )

    def _stage_verify(self):
        import numpy as np

        from .compile import GUARDED_MODEL
        from .verify import DEFAULT_MIN_SQNR, verify_fidelity

        r = self.r
        # For mixed, --min-sqnr is the search's target (met on its inputs, mixed_search); verify keeps its floor.
        asked = self.req.min_sqnr if r.precision is not Precision.MIXED else None
        min_sqnr = asked if asked is not None else DEFAULT_MIN_SQNR[r.precision]
        fp32_path = self._path("validate", FP32_OUTPUTS_FILE)
        qdq = self._path("quantize", "model.qdq.onnx")
        compiled = self._path("guard", GUARDED_MODEL)  # what the binary was compiled from
        ctx_dir = self.dirs["compile"]
        heldout_path = self._path("inputs", "heldout.npy")
        cpu_path = self._path("cpu_qdq", CPU_QDQ_FILE)

        def produce(d: Path) -> VerifyResults:
            from ..htp.record import COMPILE_RECORD, read_compile_record

            io = read_compile_record(ctx_dir / COMPILE_RECORD).io
            heldout = np.load(heldout_path)
            np.save(d / "sample_input.npy", heldout[:1])
            # The EP-context ONNX names its .bin relatively: run it where both files sit.
            return VerifyResults.model_validate(verify_fidelity(
                np.load(fp32_path), np.load(cpu_path), qdq, ctx_dir / "model.ctx.onnx", heldout, self.htp_target(),
                r.precision, classify=not r.variant.is_encoder_block, min_sqnr=min_sqnr, variant=r.variant,
                compiled_graph=compiled, io=io))

        return self._cached(
            "verify", options={"min_sqnr": min_sqnr, "precision": r.precision.value,
                               "qnn": tool_versions(("onnxruntime-qnn",))},
            inputs=self._inputs_of(("validate", FP32_OUTPUTS_FILE), ("quantize", "model.qdq.onnx"),
                                   ("guard", GUARDED_MODEL), ("compile", CONTEXT_BINARY), ("inputs", "heldout.npy"),
                                   ("cpu_qdq", CPU_QDQ_FILE)),
            produce=produce, outputs=("sample_input.npy",),
        )


def run_compile(req: CompileRequest, progress: ProgressFn | None = None) -> ExportResult:
    """The compile stage alone (the BN guard run in it: `guard_and_compile`), with the same cache,
    manifest and atomic output as an export."""
    from ..htp.workers import started_ahead

    started = time.perf_counter()
    with started_ahead("compile"):  # its start-up beside the checks and hashing below
        return _compile_alone(req, started, progress)


def _compile_alone(req: CompileRequest, started: float, progress: ProgressFn | None) -> ExportResult:
    import onnx

    from ..htp.record import CompiledModel
    from ..htp.session import HtpTarget
    from ..htp.sweep import require_onnx
    from .compile import COMPILE_OUTPUTS, GUARD_OUTPUTS, compile_options, guard_and_compile

    model = Path(req.model)
    require_onnx(model)
    _check_compilable(model, onnx.load(str(model), load_external_data=False), fp16=req.fp16)
    soc = get_soc(req.soc)
    target = HtpTarget(soc.soc_model, soc.htp_arch, fp16=req.fp16)
    model_hash = sha256_file(model)
    request = CompiledRequest(model=str(model), model_sha256=model_hash, soc=soc.name, soc_model=soc.soc_model,
                              htp_arch=soc.htp_arch, fp16=req.fp16)
    out = Path(req.output_dir) if req.output_dir else model.parent / f"{model.stem}-qnn-{soc.name}"
    emit = progress or (lambda _e: None)
    subject = CompiledModel(precision="fp16" if req.fp16 else None)

    def run_stages(work: Path) -> list[StageRecord]:
        rec, _ = run_stage("compile", work, emit, lambda: StageCache(enabled=req.use_cache).run(
            "compile", options=compile_options(target, soc.name, subject), inputs={"quantize/model.qdq.onnx": model_hash},
            produce=lambda w: guard_and_compile(model, w, target, soc=soc.name, subject=subject),
            outputs=GUARD_OUTPUTS + COMPILE_OUTPUTS,
        ))
        return [rec]

    return _assemble(out, request, force=req.force, started=started, what="compile", run_stages=run_stages,
                     reads=[model])


def _check_compilable(path: Path, model, *, fp16: bool) -> None:
    """What the QNN compiler cannot take, said before any work (after `require_onnx`): inputs of
    unknown size (a context binary has fixed shapes), float weights without --fp16."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    for inp in g.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim if inp.type.tensor_type.HasField("shape") else None
        if dims is None or any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
            shape = "unknown rank" if dims is None else "x".join(d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in dims)
            raise UsageError(f"{path}: input {inp.name!r} has a dynamic shape ({shape}).",
                             hint="Export with fixed input shapes (batch 1), or fix them with "
                                  "`python -m onnxruntime.tools.make_dynamic_shape_fixed`.")
    if any(n.op_type == "EPContext" for n in g.node):
        raise UsageError(f"{path} is already compiled (an EP-context model wrapping a QNN context binary).",
                         hint="Pass the QDQ .onnx it was compiled from (model.qdq.onnx of its export).")
    quantized = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node)
    if not quantized and not fp16:
        raise UsageError(f"{path} is a float model (no QuantizeLinear/DequantizeLinear nodes).",
                         hint="Pass --fp16 to compile it in the HTP's fp16 mode, or quantize it to QDQ first "
                              "(`swiftformer-qnn export` does both).")


def compile_export_across_versions(result: ExportResult, versions, *, use_cache: bool = True, progress=None):
    """Compile an export's QDQ model with each QNN toolchain in `versions` into
    `<export>/qnn-versions/` (replacing an earlier comparison), emulating each binary on the
    export's held-out sample so fidelity is measured on a real input."""
    import numpy as np
    import onnx

    from ..htp.record import CompileRecord
    from ..htp.session import HtpTarget
    from ..htp.sweep import compile_versions_into

    compiled = result.manifest.results("compile", CompileRecord)
    if compiled is None:
        raise UsageError(f"{result.directory} holds no compile to compare other QNN versions with.")
    model = result.artifact("quantize", "model.qdq.onnx")
    inputs = None
    sample = result.directory / "sample_input.npy"
    if sample.is_file():
        name = onnx.load(str(model), load_external_data=False).graph.input[0].name
        inputs = {name: np.load(sample)}
    target = HtpTarget(compiled.soc_model, compiled.htp_arch, fp16=compiled.fp16)
    with tempfile.TemporaryDirectory(dir=result.directory) as tmp:
        if compiled.io:  # every version compiles the graph the export's binary holds: native I/O too
            from .compile import native_io_model

            model, _ = native_io_model(model, Path(tmp))
            if inputs is not None:
                (feed,) = [t for t in compiled.io if t.role == "input"]
                inputs = {feed.name: feed.from_float(next(iter(inputs.values())))}
        return compile_versions_into(model, versions, result.directory / "qnn-versions", force=True,
                                     use_cache=use_cache, target=target, inputs=inputs, subject=compiled.model,
                                     progress=progress)
