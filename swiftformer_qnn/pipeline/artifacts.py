"""Artifacts, manifests and the stage cache.

Every pipeline stage reads input files and writes new ones; its result is keyed by a hash
of (stage, options, input hashes, tool versions), in the manner of Olive's cache. A stage
whose key is already in the cache is not run again, so a repeated request costs seconds.
Output directories (assembled beside their place, replaced only when this tool made them)
are `output_dir`'s.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)

from ..core.atomic import sha256_file
from ..core.cache import cache_root, code_version, sha256_json
from ..core.errors import OutputDirError
from ..core.output_dir import recover_leftovers, signals_held, temp_dir
from .requests import RecordedRequest
from .stage_results import STAGE_RESULTS

MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "swiftformer-qnn.export"

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def relative_path(path: str) -> str:
    """`path` as records hold it: relative, POSIX, normalised, inside its directory. A record
    is read from a plain folder anyone can edit (a CI cache restored from another branch), so
    `../x`, `/etc/x`, `a/../../x` or `C:\\x` are refused, not followed out of the directory."""
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path:
        raise ValueError(f"{path!r} is not a relative path")
    norm = posixpath.normpath(path)
    if norm.startswith("/") or norm == "." or norm == ".." or norm.startswith("../") or ":" in norm.split("/")[0]:
        raise ValueError(f"{path!r} is not a path inside its directory")
    return norm


RelativePath = Annotated[str, AfterValidator(relative_path)]


class FileRecord(_Model):
    path: RelativePath  # relative to the directory holding the record (a manifest, a stage.json)
    sha256: str
    bytes: int

    def locate(self, directory: Path) -> Path:
        """The file inside `directory`, refused (OutputDirError) when a symbolic link on the way
        leads out of it."""
        p = Path(directory) / self.path
        try:
            inside = p.resolve().is_relative_to(Path(directory).resolve())
        except (OSError, RuntimeError):  # a symlink loop
            inside = False
        if not inside:
            raise OutputDirError(f"{p} leads out of {directory} (a symbolic link): not used.",
                                 hint="Remove the link; the next run rebuilds the file.")
        return p

    def matches(self, directory: Path) -> str | None:
        """None when the file in `directory` is the one recorded (its size and SHA-256), else why not."""
        try:
            p = self.locate(directory)
            if not p.is_file():
                return f"{self.path} is missing" if not os.path.lexists(p) else f"{self.path} is not a regular file"
            if p.stat().st_size != self.bytes or sha256_file(p) != self.sha256:
                return f"{self.path} was changed"
        except OutputDirError:
            return f"{self.path} leads out of the directory"
        except OSError as exc:
            return f"{self.path} cannot be read ({exc.strerror or exc})"
        return None


R = TypeVar("R", bound=BaseModel)


class StageRecord(_Model, Generic[R]):
    """One stage's run: what went in, what came out, how long it took, and its typed results."""

    name: str
    key: str
    cached: bool = False  # True when the result came from the stage cache
    wall_s: float  # time of the run that produced the result (0 if cached in this run)
    original_wall_s: float | None = None  # for cached results: the time the producing run took
    options: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)  # name -> sha256
    outputs: dict[str, FileRecord] = Field(default_factory=dict)
    results: R


def _stage_name(value: Any) -> str | None:
    return value.get("name") if isinstance(value, dict) else getattr(value, "name", None)


# A stage record of any stage, its results validated by the model its name selects
# (`stage_results.STAGE_RESULTS`).
AnyStageRecord = Annotated[
    Union[tuple(Annotated[StageRecord[model], Tag(name)] for name, model in STAGE_RESULTS.items())],  # noqa: UP007
    Discriminator(_stage_name),
]
_STAGE_RECORD = TypeAdapter(AnyStageRecord)


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


# Temp dirs of versions that did not put their PID in the name (`.<key>.<mkdtemp suffix>`): nobody
# can tell whether their maker still runs, so only those untouched for a day are removed.
_LEGACY_TEMP = re.compile(r"^\.[0-9a-f]{32}\.[A-Za-z0-9_]{8}$")
_LEGACY_TEMP_AGE_S = 24 * 3600


def _remove_legacy_temp_dirs(stage_dir: Path) -> None:
    now = time.time()
    for entry in os.scandir(stage_dir):
        try:
            if (_LEGACY_TEMP.match(entry.name) and entry.is_dir(follow_symlinks=False)
                    and now - entry.stat(follow_symlinks=False).st_mtime > _LEGACY_TEMP_AGE_S):
                shutil.rmtree(entry.path)
        except OSError:
            continue


class StageCache:
    """Content-addressed stage results: `<root>/stages/<name>/<key>/` with a `stage.json`."""

    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = (root or cache_root()) / "stages"
        self.enabled = enabled
        self._swept = False
        self._sweep_lock = threading.Lock()

    def _sweep(self) -> None:
        """Remove the temporary directories of runs that were killed (once per cache object;
        stages and sweep workers call `run` from several threads)."""
        with self._sweep_lock:
            if self._swept:
                return
            self._swept = True
            try:
                stage_dirs = [d for d in self.root.iterdir() if d.is_dir()]
            except OSError:
                return
            for d in stage_dirs:
                recover_leftovers(d)
                _remove_legacy_temp_dirs(d)

    def _dir(self, name: str, key: str) -> Path:
        return self.root / name / key[:32]

    def lookup(self, name: str, key: str) -> tuple[StageRecord, Path] | None:
        if not self.enabled:
            return None
        d = self._dir(name, key)
        meta = d / "stage.json"
        if not meta.is_file():
            return None
        try:
            rec = _STAGE_RECORD.validate_json(meta.read_text())
        except (ValueError, ValidationError):  # another format or another stage: a miss
            return None
        if rec.name != name:
            return None
        # An entry whose files were deleted or changed (the cache is a plain folder anyone can
        # edit) is ignored: the content hash, not just the size, is what makes a hit.
        if any(out.matches(d) is not None for out in rec.outputs.values()):
            return None
        return rec, d

    def run(
        self,
        name: str,
        *,
        options: dict[str, Any],
        inputs: dict[str, str],
        produce: Callable[[Path], BaseModel],
        outputs: tuple[str, ...] = (),
        extra_key: dict[str, Any] | None = None,
    ) -> tuple[StageRecord, Path]:
        """Return the cached result of a stage, or run `produce(workdir)` and cache it.

        `produce` writes the files named in `outputs` (relative names) into `workdir` and
        returns the stage's results, an instance of `STAGE_RESULTS[name]`. The key is the hash of the
        stage's name, options, input hashes, `extra_key` and the package's code.
        """
        key = sha256_json({"stage": name, "options": options, "inputs": inputs, "extra": extra_key or {},
                           "code": code_version()})
        self._sweep()
        hit = self.lookup(name, key)
        if hit is not None:
            rec, d = hit
            return rec.model_copy(update={"cached": True, "original_wall_s": rec.wall_s, "wall_s": 0.0}), d
        final = self._dir(name, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        work: Path | None = None
        try:
            with signals_held():
                work = temp_dir(final.parent, final.name, "tmp")
            started = time.perf_counter()
            results = produce(work)
            if name not in STAGE_RESULTS:  # a new stage: give it a result model first
                raise TypeError(f"stage {name} has no result model in stage_results.STAGE_RESULTS")
            if not isinstance(results, STAGE_RESULTS[name]):
                raise TypeError(f"stage {name} returned {type(results).__name__}, not {STAGE_RESULTS[name].__name__}")
            wall = time.perf_counter() - started
            files = {}
            for out in outputs:
                p = work / out
                if not p.is_file():
                    raise RuntimeError(f"stage {name} did not write {out}")
                files[out] = FileRecord(path=out, sha256=sha256_file(p), bytes=p.stat().st_size)
            rec = StageRecord[type(results)](
                name=name, key=key, wall_s=round(wall, 3), options=options, inputs=inputs, outputs=files, results=results
            )
            (work / "stage.json").write_text(rec.model_dump_json(indent=2))
            if final.exists():
                if self.lookup(name, key) is not None:  # another process finished the same stage first
                    shutil.rmtree(work, ignore_errors=True)
                    return rec, final
                # A damaged entry (its files changed or went missing): replace it.
                stale = final.with_name(f".{final.name}.stale-{os.getpid()}")
                final.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            work.rename(final)
            return rec, final
        except BaseException:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            raise
