"""The user cache: the stage cache (a stage run once per key), and the hashes its keys are
made of: tool versions, JSON values, the package's own source tree (`code_version`, part of
every key)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from .atomic import sha256_file
from .errors import OutputDirError
from .output_dir import recover_leftovers, signals_held, swap_in, temp_dir

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


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def source_tree_hash(root: Path, salt: str = "") -> str:
    """Hash of every `.py` file below `root`, by relative path and content."""
    h = hashlib.sha256(salt.encode())
    for path in sorted(Path(root).rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


_CODE_VERSION: str | None = None


def code_version() -> str:
    """The package's version and the hash of its whole source tree: part of every cache key
    (stages and toolchain workers alike), so no result made by other code is reused. A
    hand-kept list of the files each stage depends on would miss one sooner or later."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        from .. import __version__

        _CODE_VERSION = source_tree_hash(Path(__file__).resolve().parent.parent, salt=__version__)
    return _CODE_VERSION


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("swiftformer-qnn"))


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
    """Content-addressed stage results: `<root>/stages/<name>/<key>/` with a `stage.json`,
    keyed in the manner of Olive's cache. `results` maps each stage's name to the model of its
    results (a subclass names the stages it caches)."""

    results: Mapping[str, type[BaseModel]] = {}

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
            model = self.results.get(name)
            rec = None if model is None else StageRecord[model].model_validate_json(meta.read_text())
        except (ValueError, ValidationError):  # another format or another stage: a miss
            return None
        if rec is None or rec.name != name:
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
            if name not in self.results:  # a new stage: give it a result model first
                raise TypeError(f"stage {name} has no result model in {type(self).__name__}.results")
            if not isinstance(results, self.results[name]):
                raise TypeError(f"stage {name} returned {type(results).__name__}, not {self.results[name].__name__}")
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
            # A damaged entry (its files changed or went missing) is replaced.
            swap_in(work, final)
            return rec, final
        except BaseException:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            raise
