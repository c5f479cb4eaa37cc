"""Export manifests, and the stage cache of the pipeline's stages.

Every pipeline stage reads input files and writes new ones; its result is keyed by a hash
of (stage, options, input hashes, tool versions) in the stage cache (`core.cache`), so a
repeated request costs seconds. The manifest of an export directory lists every stage's
record. Output directories (assembled beside their place, replaced only when this tool made
them) are `output_dir`'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from ..core import cache
from ..core.cache import StageRecord, relative_path
from ..core.errors import OutputDirError, ProfileError, UsageError
from ..htp.record import (
    COMPILE_FAILURE,
    COMPILE_RECORD,
    CompileFailure,
    CompileRecord,
    disagreements,
    read_compile_failure,
    read_compile_record,
)
from .requests import RecordedRequest
from .stage_results import STAGE_RESULTS

MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "swiftformer-qnn.export"
# The model outputs on the held-out inputs, one row per input: the reference's of the PyTorch
# model (validate compares the float graph with them), validate's of the float graph that gets
# quantized, cpu_qdq's of the QDQ graph on onnxruntime's CPU EP (verify compares the HTP with
# both; `profile --check-outputs` compares a phone with them).
PYTORCH_OUTPUTS_FILE = "heldout_pytorch.npy"
FP32_OUTPUTS_FILE = "heldout_fp32.npy"
CPU_QDQ_FILE = "heldout_qdq_cpu.npy"
# The float graphs an export holds, the one that was quantized first (BatchNorm folded unless
# --graph faithful).
FLOAT_GRAPHS = (("fold_bn", "model.fold.onnx"), ("simplify", "model.sim.onnx"))
R = TypeVar("R", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _stage_name(value: Any) -> str | None:
    return value.get("name") if isinstance(value, dict) else getattr(value, "name", None)


# A stage record of any stage, its results validated by the model its name selects
# (`stage_results.STAGE_RESULTS`).
AnyStageRecord = Annotated[
    Union[tuple(Annotated[StageRecord[model], Tag(name)] for name, model in STAGE_RESULTS.items())],  # noqa: UP007
    Discriminator(_stage_name),
]


class ExportManifest(_Model):
    kind: str = MANIFEST_KIND
    schema_version: int = 1
    status: str = "complete"
    request_key: str
    request: RecordedRequest  # what was asked, resolved (requests.py); the key hashes it
    tools: dict[str, str]
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    wall_s: float = 0.0
    stages: list[AnyStageRecord] = Field(default_factory=list)

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)

    def results(self, name: str, model: type[R]) -> R | None:
        """The typed results of stage `name` (None if the export stopped before it)."""
        rec = self.stage(name)
        if rec is None:
            return None
        if not isinstance(rec.results, model):
            raise TypeError(f"stage {name} holds {type(rec.results).__name__}, not {model.__name__}")
        return rec.results

    def computed_from(self, stage: str, *sources: tuple[str, str]) -> bool:
        """Whether `stage` ran on exactly these outputs of this export (each (stage, file)): its
        record names each with the SHA-256 this manifest records for that file."""
        rec = self.stage(stage)
        if rec is None:
            return False
        for made_by, name in sources:
            src = self.stage(made_by)
            if src is None or name not in src.outputs or rec.inputs.get(f"{made_by}/{name}") != src.outputs[name].sha256:
                return False
        return True

    def float_graph(self) -> tuple[str, str] | None:
        """(stage, file) of the float graph that was quantized (`FLOAT_GRAPHS`); None if none."""
        return next(((s, name) for s, name in FLOAT_GRAPHS if self.stage(s) and name in self.stage(s).outputs), None)

    def artifact(self, directory: Path, stage: str, output: str) -> Path:
        """The path of an output of the export in `directory`, checked against the size and
        SHA-256 the manifest records: a file replaced or edited since is never used as the
        export's (OutputDirError, saying how to rebuild it)."""
        rec = self.stage(stage)
        if rec is None or output not in rec.outputs:
            raise OutputDirError(f"{directory}: the export has no {stage}/{output} artifact.")
        record = rec.outputs[output]
        why = record.matches(Path(directory))
        if why is not None:
            raise OutputDirError(f"{directory}: {why} (against the size and SHA-256 the export's manifest records), "
                                 "so it is not used as the export's.",
                                 hint="Run the same `export` (or `compile`) again: it rebuilds the files that "
                                      "no longer match its manifest and keeps the rest.")
        return Path(directory) / record.path

    def files(self) -> frozenset[str]:
        """Every file of the export: the manifest and each stage's outputs."""
        return frozenset({MANIFEST_NAME} | {out.path for s in self.stages for out in s.outputs.values()})


def holds_export_manifest(directory: Path) -> bool:
    """Whether `directory` holds a manifest this tool wrote (its `kind`), whether or not this
    version can read it: a directory an earlier swiftformer-qnn made is still the tool's own."""
    try:
        return json.loads((Path(directory) / MANIFEST_NAME).read_text()).get("kind") == MANIFEST_KIND
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def read_manifest(directory: Path) -> ExportManifest | None:
    """The manifest of a complete export directory, or None if there is none."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("kind") != MANIFEST_KIND:
            return None
        return ExportManifest.model_validate(data)
    except (OSError, ValueError, AttributeError, RecursionError):  # AttributeError: JSON that is not an object
        return None


def damaged_outputs(directory: Path, manifest: ExportManifest) -> list[str]:
    """What no longer matches the manifest among a directory's files (missing, other size,
    other SHA-256), one phrase each; hashed in parallel (hashlib releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    records = {out.path: out for stage in manifest.stages for out in stage.outputs.values()}
    with ThreadPoolExecutor(max_workers=min(4, len(records) or 1)) as pool:
        return [why for why in pool.map(lambda rec: rec.matches(Path(directory)), records.values()) if why]


def manifest_files(directory: Path) -> frozenset[str] | None:
    """The files a manifest of this tool in `directory` lists (itself included), read leniently
    so that an earlier version's manifest counts too; None when there is no such manifest or
    it lists nothing readable (then nothing in the directory can be told the user's)."""
    try:
        data = json.loads((Path(directory) / MANIFEST_NAME).read_text())
        if data.get("kind") != MANIFEST_KIND:
            return None
        paths = {MANIFEST_NAME}
        for stage in data.get("stages") or ():
            for out in (stage.get("outputs") or {}).values():
                try:
                    paths.add(relative_path(out["path"]))
                except (ValueError, KeyError, TypeError):
                    continue
        return frozenset(paths)
    except (OSError, ValueError, AttributeError, TypeError, RecursionError):
        return None


class StageCache(cache.StageCache):
    """The stage cache of the pipeline's stages: a result is read back as `STAGE_RESULTS[name]`."""

    results = STAGE_RESULTS


# --------------------------------------------------------------------------- compile records found under paths


def _identity(entry: CompileRecord | CompileFailure, key: str) -> Any:
    """The identity of what was compiled (`variant`, `precision`, ...; `soc`, which a failure
    does not say), the same for a compile record and a failure."""
    return getattr(entry, "soc", None) if key == "soc" else getattr(entry.model, key)


@dataclass(frozen=True)
class FoundCompile:
    """One compile record and the file it was read from."""

    record: CompileRecord
    path: Path

    @property
    def qnn_version(self) -> str:
        return self.record.qnn_version

    def identity(self, key: str) -> Any:
        return _identity(self.record, key)


@dataclass(frozen=True)
class FoundFailure:
    """A QNN version that did not compile, and where it says so."""

    failure: CompileFailure
    path: Path

    @property
    def qnn_version(self) -> str:
        return self.failure.qnn_version

    def identity(self, key: str) -> Any:
        return _identity(self.failure, key)

    @property
    def error(self) -> str:
        return f"{self.failure.status}: {self.failure.error}"


@dataclass
class CompileSide:
    """Every compile found under the paths of one side."""

    compiles: list[FoundCompile] = field(default_factory=list)
    failures: list[FoundFailure] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [c.path for c in self.compiles] + [f.path for f in self.failures]

    def extend(self, other: CompileSide) -> None:
        self.compiles += other.compiles
        self.failures += other.failures


def read_compile_file(path: Path) -> CompileSide:
    """The compile (or the failure) one `compile.json` / `compile_failed.json` records."""
    path = Path(path)
    if path.name == COMPILE_FAILURE:
        return CompileSide(failures=[FoundFailure(read_compile_failure(path), path)])
    record = read_compile_record(path)
    # An export's compile.json is vouched for by the export's manifest; any record by the
    # binary and op trace beside it. An edited record is never gated as the compile.
    manifest = read_manifest(path.parent)
    stage = manifest.stage("compile") if manifest else None
    if stage is not None and COMPILE_RECORD in stage.outputs:
        try:
            manifest.artifact(path.parent, "compile", COMPILE_RECORD)
        except OutputDirError as exc:
            raise ProfileError(exc.message, hint=exc.hint) from None
    wrong = disagreements(path.parent, record)
    if wrong:
        raise ProfileError(f"{path}: the files beside it disagree with it ({'; '.join(wrong)}).",
                           hint="Compile again (the same export or compile command rebuilds what no longer matches).")
    return CompileSide(compiles=[FoundCompile(record, path)])


def _records_in(directory: Path) -> list[Path]:
    """The compile records of a directory: its own `compile.json` (or `compile_failed.json`)
    stands for it (an export's `qnn-versions/` beside it is gated by naming it); a directory
    with neither is searched below (`build/` with several exports, a `qnn-versions/`)."""
    for name in (COMPILE_RECORD, COMPILE_FAILURE):
        if (directory / name).is_file():
            return [directory / name]
    found = []
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += _records_in(sub)
    return found


def read_compile_side(paths: Sequence[Path], *, side: str = "candidate") -> CompileSide:
    """Every compile under `paths`: files as given, directories searched (see `_records_in`)."""
    if not paths:
        raise ProfileError(f"No {side} given.", hint=f"Pass --{side} FILE_OR_DIR.")
    out = CompileSide()
    for p in map(Path, paths):
        if p.is_dir():
            files = _records_in(p)
            if not files:
                raise ProfileError(
                    f"{p}: no {COMPILE_RECORD} below this {side} directory.",
                    hint="Export or compile first (swiftformer-qnn export, or export --qnn for several QNN versions).",
                )
            for f in files:
                out.extend(read_compile_file(f))
        elif p.is_file():
            out.extend(read_compile_file(p))
        else:
            raise ProfileError(f"{p}: no such compile record or directory.")
    return out


def read_compile_structure(path: Path, *, side: str = "candidate") -> FoundCompile:
    """The one compile a file or directory holds (an error if it holds several or a failure)."""
    side = read_compile_side([Path(path)], side=side)
    return only_compile(side, str(path), hint="Point at one of them, e.g. its qnn-<version>/ directory.")


def only_compile(side: CompileSide, what: str, *, hint: str) -> FoundCompile:
    """The one successful compile a baseline must be; anything else is an input error naming `what`."""
    if side.failures:
        f = side.failures[0]
        raise ProfileError(f"{what}: QNN {f.qnn_version} did not compile ({f.error}) at {f.path}.")
    if len(side.compiles) != 1:
        raise UsageError(
            f"{what} holds {len(side.compiles)} compiles (QNN "
            f"{', '.join(c.qnn_version for c in side.compiles)}); one is needed here.",
            hint=hint,
        )
    return side.compiles[0]
