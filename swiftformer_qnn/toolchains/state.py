"""Where toolchains live and what state each is in (default, ready, broken, not installed),
read from the directory alone; `verify_toolchain` also loads one in a subprocess."""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ToolchainError
from .registry import COMMON_REQUIREMENTS, TOOLCHAINS, QnnToolchainSpec, main_environment_spec
from .worker import probe_problems, probe_python

TOOLCHAINS_ENV = "SWIFTFORMER_QNN_TOOLCHAINS"
MARKER_NAME = "toolchain.json"
MARKER_KIND = "swiftformer-qnn.toolchain"
ENV_DIR = "env"  # the virtual environment inside a toolchain directory
CACHE_DIR = ".cache"  # under the root: the installers' download caches (uv/, pip/)


def toolchains_root() -> Path:
    """Where toolchains live: $SWIFTFORMER_QNN_TOOLCHAINS, else `<cache_root>/toolchains`."""
    env = os.environ.get(TOOLCHAINS_ENV)
    if env:
        return Path(env).expanduser()
    from ..core.cache import cache_root

    return cache_root() / "toolchains"


class ToolchainState(str, Enum):
    DEFAULT = "default"  # provided by the main environment, nothing to install
    READY = "ready"
    BROKEN = "broken"  # a directory exists but does not hold the promised environment
    NOT_INSTALLED = "not installed"


class ToolchainMarker(BaseModel):
    """`toolchain.json`: written last, after verification; its presence means ready."""

    model_config = ConfigDict(extra="forbid")

    kind: str = MARKER_KIND
    schema_version: int = 1
    qnn_version: str
    onnxruntime_qnn: str
    onnxruntime: str
    packages: dict[str, str]  # what the verification probe imported, name -> version
    python: str  # interpreter version of the environment
    installer: str  # e.g. "uv 0.13.8" or "pip 23.2.1"
    install_s: float
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class ToolchainStatus:
    spec: QnnToolchainSpec
    state: ToolchainState
    location: Path | None  # the toolchain directory (for the default: the main sys.prefix)
    python: Path | None  # the interpreter a worker runs with
    detail: str = ""  # why it is broken
    marker: ToolchainMarker | None = None

    @property
    def usable(self) -> bool:
        return self.state in (ToolchainState.DEFAULT, ToolchainState.READY)


def toolchain_dir(spec: QnnToolchainSpec, root: Path | None = None) -> Path:
    return (root or toolchains_root()) / spec.name


def env_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _site_packages(env_dir: Path) -> list[Path]:
    return [p for p in (env_dir / "lib").glob("python*/site-packages") if p.is_dir()]


def _dist_info_present(env_dir: Path, dist: str, ver: str) -> bool:
    stem = f"{dist.replace('-', '_')}-{ver}.dist-info"
    return any((sp / stem).is_dir() for sp in _site_packages(env_dir))


def _missing_file(env_dir: Path, dist: str, ver: str) -> str | None:
    """A file the installer recorded for `dist` (its dist-info's RECORD) that is no longer in the
    environment, or None. Only existence, not content: a stat per file keeps this cheap (tens of
    milliseconds for onnxruntime-qnn), and a deleted module is the breakage that otherwise
    surfaces as a worker's raw ModuleNotFoundError. Byte code (`.pyc`) is left out: Python
    writes it again."""
    stem = f"{dist.replace('-', '_')}-{ver}.dist-info"
    for sp in _site_packages(env_dir):
        record = sp / stem / "RECORD"
        try:
            lines = record.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue  # no RECORD (an installer that writes none): nothing to check by
        for line in lines:
            rel = line.rsplit(",", 2)[0] if line.count(",") >= 2 else line
            if not rel or rel.endswith(".pyc") or rel.startswith(".."):
                continue
            if not os.path.lexists(sp / rel):
                return rel
    return None


@contextmanager
def toolchain_in_use(location: Path | None) -> Iterator[None]:
    """A shared lock on a toolchain's directory while a run uses it (a worker compiles or
    estimates with it): `remove_toolchain` takes the exclusive one and refuses while any run
    holds this. The kernel drops the lock with the process, so a killed run blocks nothing.
    No-op for the main environment (`location` None)."""
    if location is None:
        yield
        return
    try:
        fd = os.open(location, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield  # gone already: the run's own checks say so
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextmanager
def toolchain_exclusive(location: Path, what: str) -> Iterator[None]:
    """The exclusive lock on a toolchain's directory for removing it; a ToolchainError, at
    once, while a run uses it."""
    fd = os.open(location, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ToolchainError(f"{what} is in use by a running compile or estimate: not removed.",
                                 hint="Remove it when that run has ended.") from None
        yield
    finally:
        os.close(fd)


def inspect_toolchain(spec: QnnToolchainSpec, root: Path | None = None) -> ToolchainStatus:
    """Cheap, file-based state of one toolchain (no subprocess; see `verify_toolchain`)."""
    main = main_environment_spec()
    if main == spec:
        return ToolchainStatus(spec, ToolchainState.DEFAULT, Path(sys.prefix), Path(sys.executable))
    d = toolchain_dir(spec, root)
    if not d.exists():
        return ToolchainStatus(spec, ToolchainState.NOT_INSTALLED, None, None)
    python = env_python(d / ENV_DIR)

    def broken(why: str, marker: ToolchainMarker | None = None) -> ToolchainStatus:
        return ToolchainStatus(spec, ToolchainState.BROKEN, d, python, why, marker)

    marker_path = d / MARKER_NAME
    if not marker_path.is_file():
        return broken(f"{MARKER_NAME} is missing")
    try:
        marker = ToolchainMarker.model_validate_json(marker_path.read_text())
    except (OSError, ValueError):
        return broken(f"{MARKER_NAME} is unreadable")
    if (marker.qnn_version, marker.onnxruntime_qnn, marker.onnxruntime) != (
        spec.qnn_version,
        spec.onnxruntime_qnn,
        spec.onnxruntime,
    ):
        return broken(
            f"it holds onnxruntime-qnn {marker.onnxruntime_qnn} + onnxruntime {marker.onnxruntime}, "
            f"expected {spec.onnxruntime_qnn} + {spec.onnxruntime}",
            marker,
        )
    # resolve(): the environment's python is a link to the interpreter it was made from.
    if not python.exists() or not python.resolve().exists():
        return broken(f"its Python interpreter {python} is gone", marker)
    for dist, ver in (("onnxruntime-qnn", spec.onnxruntime_qnn), ("onnxruntime", spec.onnxruntime)):
        if not _dist_info_present(d / ENV_DIR, dist, ver):
            return broken(f"{dist} {ver} is no longer installed in it", marker)
    for req in COMMON_REQUIREMENTS:  # a toolchain made by an older swiftformer-qnn may lack one
        dist, ver = req.split("==")
        if not _dist_info_present(d / ENV_DIR, dist, ver):
            return broken(f"it lacks {dist} {ver}, which this swiftformer-qnn's worker imports", marker)
    for dist, ver in (("onnxruntime-qnn", spec.onnxruntime_qnn), ("onnxruntime", spec.onnxruntime),
                      *(tuple(req.split("==")) for req in COMMON_REQUIREMENTS)):
        gone = _missing_file(d / ENV_DIR, dist, ver)
        if gone:
            return broken(f"{gone} of {dist} {ver} is missing from its environment", marker)
    return ToolchainStatus(spec, ToolchainState.READY, d, python, "", marker)


def list_toolchains(root: Path | None = None, *, verify: bool = False) -> list[ToolchainStatus]:
    """Every known QNN version with its state; `verify` also loads each ready one in a subprocess."""
    statuses = [inspect_toolchain(s, root) for s in TOOLCHAINS]
    if verify:
        statuses = [verify_toolchain(s, root) if s.state is ToolchainState.READY else s for s in statuses]
    return statuses


def reinstall_hint(spec: QnnToolchainSpec) -> str:
    return f"Reinstall it: swiftformer-qnn toolchains install {spec.major_minor} --force."


def resolve_toolchain(spec: QnnToolchainSpec, root: Path | None = None) -> ToolchainStatus:
    """The usable toolchain for `spec`, or a ToolchainError saying how to get one."""
    status = inspect_toolchain(spec, root)
    if status.usable:
        return status
    if status.state is ToolchainState.BROKEN:
        raise ToolchainError(
            f"The QNN {spec.qnn_version} toolchain at {status.location} is broken: {status.detail}.",
            hint=reinstall_hint(spec),
        )
    raise ToolchainError(
        f"The QNN {spec.qnn_version} toolchain is not installed.",
        hint=f"Install it: swiftformer-qnn toolchains install {spec.major_minor}.",
    )


def resolve_toolchains(specs: Sequence[QnnToolchainSpec], root: Path | None = None) -> list[ToolchainStatus]:
    """`resolve_toolchain` for several versions, naming every missing one in a single error."""
    statuses = [inspect_toolchain(s, root) for s in specs]
    for status in statuses:
        if status.state is ToolchainState.BROKEN:
            resolve_toolchain(status.spec, root)  # raises with the reinstall hint
    missing = [s.spec for s in statuses if s.state is ToolchainState.NOT_INSTALLED]
    if len(missing) == 1:
        resolve_toolchain(missing[0], root)
    if missing:
        raise ToolchainError(
            f"The QNN toolchains {', '.join(s.qnn_version for s in missing)} are not installed.",
            hint=f"Install them: swiftformer-qnn toolchains install {' '.join(s.major_minor for s in missing)}.",
        )
    return statuses


def verify_toolchain(
    status_or_spec: ToolchainStatus | QnnToolchainSpec, root: Path | None = None
) -> ToolchainStatus:
    """Load the toolchain in a subprocess; a failure turns READY into BROKEN with the reason."""
    status = (
        status_or_spec
        if isinstance(status_or_spec, ToolchainStatus)
        else inspect_toolchain(status_or_spec, root)
    )
    if status.state is not ToolchainState.READY or status.python is None or status.location is None:
        return status
    problems = probe_problems(status.spec, probe_python(status.python), status.location / ENV_DIR)
    if problems:
        return ToolchainStatus(
            status.spec,
            ToolchainState.BROKEN,
            status.location,
            status.python,
            "; ".join(problems),
            status.marker,
        )
    return status
