"""Artifacts, manifests and the stage cache.

Every pipeline stage reads input files and writes new ones; its result is keyed by a hash
of (stage, options, input hashes, tool versions), in the manner of Olive's cache. A stage
whose key is already in the cache is not run again, so a repeated request costs seconds.
Output directories (assembled beside their place, replaced only when this tool made them)
are `output_dir`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import OutputDirError
from .output_dir import place, recover_leftovers, staged_output_dir, temp_dir  # noqa: F401  (re-exports)

MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "swiftformer-qnn.export"
CACHE_ENV = "SWIFTFORMER_QNN_CACHE"

_TOOLS = ("swiftformer-qnn", "torch", "onnx", "onnxruntime", "onnxruntime-qnn", "onnxsim", "numpy")


def tool_versions(names: tuple[str, ...] = _TOOLS) -> dict[str, str]:
    """Installed versions from package metadata (no heavy imports)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def sha256_file(path: Path, _chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("swiftformer-qnn"))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileRecord(_Model):
    path: str  # relative to the directory holding the manifest
    sha256: str
    bytes: int


class StageRecord(_Model):
    """One stage's run: what went in, what came out, how long it took."""

    name: str
    key: str
    cached: bool = False  # True when the result came from the stage cache
    wall_s: float  # time of the run that produced the result (0 if cached in this run)
    original_wall_s: float | None = None  # for cached results: the time the producing run took
    options: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)  # name -> sha256
    outputs: dict[str, FileRecord] = Field(default_factory=dict)
    results: dict[str, Any] = Field(default_factory=dict)


class ExportManifest(_Model):
    kind: str = MANIFEST_KIND
    schema_version: int = 1
    status: str = "complete"
    request_key: str
    request: dict[str, Any]
    tools: dict[str, str]
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    wall_s: float = 0.0
    stages: list[StageRecord] = Field(default_factory=list)

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)

    def artifact(self, directory: Path, stage: str, output: str) -> Path:
        rec = self.stage(stage)
        if rec is None or output not in rec.outputs:
            raise OutputDirError(f"{directory}: the export has no {stage}/{output} artifact.")
        return Path(directory) / rec.outputs[output].path


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

    def check(rec: FileRecord) -> str | None:
        p = Path(directory) / rec.path
        try:
            if not p.is_file():
                return f"{rec.path} is missing"
            if p.stat().st_size != rec.bytes or sha256_file(p) != rec.sha256:
                return f"{rec.path} was changed"
        except OSError as exc:
            return f"{rec.path} cannot be read ({exc.strerror or exc})"
        return None

    with ThreadPoolExecutor(max_workers=min(4, len(records) or 1)) as pool:
        return [why for why in pool.map(check, records.values()) if why]


class StageCache:
    """Content-addressed stage results: `<root>/stages/<name>/<key>/` with a `stage.json`."""

    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = (root or cache_root()) / "stages"
        self.enabled = enabled
        self._swept = False

    def _sweep(self) -> None:
        """Remove the temporary directories of runs that were killed (once per cache object)."""
        if self._swept:
            return
        self._swept = True
        try:
            stage_dirs = [d for d in self.root.iterdir() if d.is_dir()]
        except OSError:
            return
        for d in stage_dirs:
            recover_leftovers(d)

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
            rec = StageRecord.model_validate_json(meta.read_text())
        except ValueError:
            return None
        # An entry whose files were deleted or changed (the cache is a plain folder anyone can
        # edit) is ignored: the content hash, not just the size, is what makes a hit.
        for out in rec.outputs.values():
            p = d / out.path
            if not p.is_file() or p.stat().st_size != out.bytes or sha256_file(p) != out.sha256:
                return None
        return rec, d

    def run(
        self,
        name: str,
        *,
        options: dict[str, Any],
        inputs: dict[str, str],
        produce: Callable[[Path], dict[str, Any]],
        outputs: tuple[str, ...] = (),
        extra_key: dict[str, Any] | None = None,
    ) -> tuple[StageRecord, Path]:
        """Return the cached result of a stage, or run `produce(workdir)` and cache it.

        `produce` writes the files named in `outputs` (relative names) into `workdir` and
        returns the stage's results (figures for the manifest).
        """
        key = sha256_json({"stage": name, "options": options, "inputs": inputs, "extra": extra_key or {}})
        self._sweep()
        hit = self.lookup(name, key)
        if hit is not None:
            rec, d = hit
            return rec.model_copy(update={"cached": True, "original_wall_s": rec.wall_s, "wall_s": 0.0}), d
        final = self._dir(name, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        work = temp_dir(final.parent, final.name, "tmp")
        try:
            started = time.perf_counter()
            results = produce(work)
            wall = time.perf_counter() - started
            files = {}
            for out in outputs:
                p = work / out
                if not p.is_file():
                    raise RuntimeError(f"stage {name} did not write {out}")
                files[out] = FileRecord(path=out, sha256=sha256_file(p), bytes=p.stat().st_size)
            rec = StageRecord(
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
            shutil.rmtree(work, ignore_errors=True)
            raise
