"""QNN toolchains: one isolated Python environment per QNN SDK version.

Each onnxruntime-qnn release bundles one QNN SDK (offline HTP compiler + x86 HTP emulator)
and one process can load only one of them, so compiling with several QNN versions needs
several environments. A toolchain is such an environment under `toolchains_root()`,
holding only onnxruntime, onnxruntime-qnn, numpy and onnx (never torch); the main
environment's own onnxruntime-qnn is the default toolchain and needs no install.

An install is built in a temporary sibling directory, verified by loading the QNN
execution provider and reading its QNN version, marked ready, and only then renamed into
place: an interrupted or failed install (no network, disk full) never leaves a toolchain
that looks ready.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ._atomic import write_text_atomic
from .errors import ToolchainError, UsageError
from .versions import parse_version, same_release, short_version, version_key  # noqa: F401 (one parser: versions.py)

TOOLCHAINS_ENV = "SWIFTFORMER_QNN_TOOLCHAINS"
MARKER_NAME = "toolchain.json"
MARKER_KIND = "swiftformer-qnn.toolchain"
ENV_DIR = "env"  # the virtual environment inside a toolchain directory


@dataclass(frozen=True)
class QnnToolchainSpec:
    """One QNN SDK as onnxruntime-qnn ships it, and the onnxruntime that loads that release."""

    qnn_version: str  # QNN SDK bundled in the wheel (`onnxruntime_qnn.build_and_package_info.qnn_version`)
    onnxruntime_qnn: str  # the onnxruntime-qnn release bundling it
    onnxruntime: str  # an onnxruntime release verified to load it (tests/test_toolchains.py)

    @property
    def name(self) -> str:
        return f"qnn-{self.qnn_version}"

    @property
    def major_minor(self) -> str:
        return ".".join(self.qnn_version.split(".")[:2])

    def requirements(self) -> list[str]:
        return [
            f"onnxruntime-qnn=={self.onnxruntime_qnn}",
            f"onnxruntime=={self.onnxruntime}",
            *COMMON_REQUIREMENTS,
        ]


# The one place pairing each onnxruntime-qnn release with an onnxruntime that loads it.
# onnxruntime-qnn is a plugin EP: a too-new onnxruntime refuses an old plugin
# (onnxruntime 1.31.1 rejects onnxruntime-qnn 2.3.0 with `ort_version_supported=0`), so
# 2.3.0 gets the newest onnxruntime found to load it. Every pair is installed and loaded by
# a slow test; the main environment's pair (pyproject.toml) is checked by a fast one.
TOOLCHAINS: tuple[QnnToolchainSpec, ...] = (
    QnnToolchainSpec("2.47.0", "2.3.0", "1.25.1"),
    QnnToolchainSpec("2.48.40", "2.4.0", "1.31.1"),
    QnnToolchainSpec("2.49.40", "2.5.0", "1.31.1"),
    QnnToolchainSpec("2.50.40", "2.6.0", "1.31.1"),
    QnnToolchainSpec("2.51.0", "2.7.0", "1.31.1"),
)

# onnxruntime releases found NOT to load an onnxruntime-qnn release (a slow test shows the
# refusal is caught by verification, so such an environment is never marked ready).
KNOWN_REFUSALS: dict[str, tuple[str, ...]] = {"2.3.0": ("1.31.1",)}

# What the worker imports besides onnxruntime(-qnn): the main environment's own releases
# (constraints.txt pins the tested ones), so toolchains differ only in their onnxruntime pair.
COMMON_REQUIREMENTS: tuple[str, ...] = tuple(f"{dist}=={version(dist)}" for dist in ("numpy", "onnx"))


def known_versions() -> str:
    return ", ".join(s.qnn_version for s in TOOLCHAINS)


def split_versions(value: str | Sequence[str]) -> list[str]:
    """`"2.47,2.51"` or `["2.49", "2.48,2.47"]` -> the stripped, non-empty tokens, in order."""
    items = [value] if isinstance(value, str) else list(value)
    return [t.strip() for item in items for t in str(item).split(",") if t.strip()]


def get_toolchain_spec(text: str) -> QnnToolchainSpec:
    """Resolve "2.49", "2.49.40", "v2.49.40" or an EPContext `ep_sdk_version` like
    "v2.51.0.260929181845" to its toolchain."""
    for spec in TOOLCHAINS:
        if same_release(text, spec.qnn_version):
            return spec
    raise UsageError(f"Unknown QNN version {text.strip()!r}.", hint=f"Known: {known_versions()} (or 'all').")


def parse_qnn_versions(value: str | Sequence[str]) -> list[QnnToolchainSpec]:
    """Parse `--qnn 2.47,2.51` / `all` (or a list of such strings) into toolchains, oldest first."""
    tokens = split_versions(value)
    if not tokens:
        raise UsageError("No QNN version given.", hint=f"Known: {known_versions()} (or 'all').")
    chosen: dict[str, QnnToolchainSpec] = {}
    for token in tokens:
        if token.lower() == "all":
            chosen.update((s.qnn_version, s) for s in TOOLCHAINS)
        else:
            spec = get_toolchain_spec(token)
            chosen[spec.qnn_version] = spec
    return sorted(chosen.values(), key=lambda s: version_key(s.qnn_version))


def toolchains_root() -> Path:
    """Where toolchains live: $SWIFTFORMER_QNN_TOOLCHAINS, else `<cache_root>/toolchains`."""
    env = os.environ.get(TOOLCHAINS_ENV)
    if env:
        return Path(env).expanduser()
    from .artifacts import cache_root

    return cache_root() / "toolchains"


def _installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main_environment_spec() -> QnnToolchainSpec | None:
    """The toolchain the main environment provides (its own onnxruntime-qnn), if any."""
    mine = _installed("onnxruntime-qnn")
    if mine is None:
        return None
    for spec in TOOLCHAINS:
        if spec.onnxruntime_qnn == mine:
            return spec
    return None


# ---------------------------------------------------------------------------------------------
# Status


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


# ---------------------------------------------------------------------------------------------
# Running the worker in a toolchain


def package_shim(dest: Path) -> Path:
    """A directory holding only a link to this package, for a worker's PYTHONPATH.

    Putting the package's parent on PYTHONPATH instead would, for a non-editable install,
    put the main site-packages (and its onnxruntime) ahead of the toolchain's own.
    """
    dest.mkdir(parents=True, exist_ok=True)
    link = dest / "swiftformer_qnn"
    if not link.exists():
        pkg = Path(__file__).resolve().parent
        try:
            link.symlink_to(pkg, target_is_directory=True)
        except OSError:  # no symlinks (some filesystems): a copy of the pure-Python package
            shutil.copytree(pkg, link, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def worker_env(shim: Path) -> dict[str, str]:
    """The environment of a worker process: only the shim on the path, no user site."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(shim)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def worker_command(python: Path, *args: str) -> list[str]:
    return [str(python), "-s", "-m", "swiftformer_qnn.qnn_worker", *args]


def probe_python(python: Path, *, timeout_s: float = 300) -> dict:
    """Run the worker's `probe` with `python`: what it imports and whether the HTP device loads."""
    with tempfile.TemporaryDirectory(prefix="swiftformer-qnn-probe-") as tmp:
        shim = package_shim(Path(tmp) / "shim")
        result = Path(tmp) / "probe.json"
        try:
            proc = subprocess.run(
                worker_command(python, "probe", "--result", str(result)),
                env=worker_env(shim),
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"status": "failed", "message": f"could not run {python}: {exc}"}
        if result.is_file():
            try:
                return json.loads(result.read_text())
            except ValueError:
                pass
        tail = _tail(proc.stderr or proc.stdout)
        return {"status": "failed", "message": f"{python} exited with {proc.returncode}: {tail}"}


def probe_problems(spec: QnnToolchainSpec, probe: dict, env_dir: Path | None) -> list[str]:
    """What is wrong with a probe result for `spec` (empty when the toolchain is sound)."""
    if probe.get("status") != "ok":
        return [str(probe.get("message") or "the probe failed")]
    problems = []
    pkgs = probe.get("packages", {})
    if probe.get("qnn_version") != spec.qnn_version:
        problems.append(f"it reports QNN {probe.get('qnn_version')}, expected {spec.qnn_version}")
    for dist, want in (("onnxruntime-qnn", spec.onnxruntime_qnn), ("onnxruntime", spec.onnxruntime)):
        if pkgs.get(dist) != want:
            problems.append(f"it imports {dist} {pkgs.get(dist)}, expected {want}")
    if env_dir is not None:
        # An onnxruntime imported from elsewhere (a leaked PYTHONPATH) would test the wrong thing.
        origin = probe.get("onnxruntime_file", "")
        if not Path(origin).resolve().is_relative_to(env_dir.resolve()):
            problems.append(f"it imports onnxruntime from {origin}, outside the toolchain")
        # The main environment (env_dir None) holds torch by design; a toolchain must not.
        if probe.get("torch_installed"):
            problems.append("torch is installed in it (a toolchain holds only what compiling needs)")
    return problems


def verify_toolchain(status_or_spec: ToolchainStatus | QnnToolchainSpec, root: Path | None = None) -> ToolchainStatus:
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
            status.spec, ToolchainState.BROKEN, status.location, status.python, "; ".join(problems), status.marker
        )
    return status


# ---------------------------------------------------------------------------------------------
# Package indexes: the ones pip is configured with, passed to uv as well


@dataclass(frozen=True)
class IndexConfig:
    """Where packages come from, mirrored from pip's configuration so uv sees the same indexes."""

    index_url: str | None = None  # None: the installer's default (PyPI)
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    cert: str | None = None
    timeout_s: float | None = None

    @classmethod
    def from_pip(cls) -> IndexConfig:
        """pip's effective configuration (files and PIP_* variables) via `pip config list`."""
        text = ""
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
            )
            if proc.returncode == 0:
                text = proc.stdout
        except (OSError, subprocess.TimeoutExpired):
            pass
        values = parse_pip_config_list(text)
        # Without pip, its environment variables still say what the user set up.
        for key in ("index-url", "extra-index-url", "find-links", "no-index", "cert", "default-timeout", "timeout"):
            env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
            if env is not None:
                values.setdefault(key, env)
        return cls.from_pip_values(values)

    @classmethod
    def from_pip_values(cls, values: dict[str, str]) -> IndexConfig:
        timeout = values.get("timeout") or values.get("default-timeout")
        try:
            timeout_s = float(timeout) if timeout else None
        except ValueError:
            timeout_s = None
        return cls(
            index_url=values.get("index-url") or None,
            extra_index_urls=tuple(values.get("extra-index-url", "").split()),
            find_links=tuple(values.get("find-links", "").split()),
            no_index=values.get("no-index", "").lower() in ("1", "true", "yes", "on"),
            cert=values.get("cert") or None,
            timeout_s=timeout_s,
        )

    def installer_args(self) -> list[str]:
        """Index options, spelled the same for `pip install` and `uv pip install`."""
        args: list[str] = []
        if self.no_index:
            args.append("--no-index")
        elif self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args

    def uv_env(self) -> dict[str, str]:
        env = {}
        if self.cert and "SSL_CERT_FILE" not in os.environ:
            env["SSL_CERT_FILE"] = self.cert  # uv's way of trusting the CA bundle pip is told about
        if self.timeout_s and "UV_HTTP_TIMEOUT" not in os.environ:
            env["UV_HTTP_TIMEOUT"] = str(int(self.timeout_s))
        return env

    def describe(self) -> str:
        if self.no_index:
            places = list(self.find_links) or ["no index"]
        else:
            places = [self.index_url or "PyPI", *self.extra_index_urls, *self.find_links]
        return ", ".join(places)


def parse_pip_config_list(text: str) -> dict[str, str]:
    """`pip config list` lines (`global.find-links='/opt/wheels'`) -> key -> value.

    pip applies PIP_* variables (`:env:.key`) over the `install` section over `global`.
    """
    by_source: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([^.\s]+)\.([\w-]+)\s*=\s*(.*?)\s*$", line)
        if not m:
            continue
        section, key, raw = m.groups()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw = raw[1:-1]
        by_source.setdefault(section, {})[key] = raw
    merged: dict[str, str] = {}
    for section in ("global", "install", ":env:"):
        merged.update(by_source.get(section, {}))
    return merged


# ---------------------------------------------------------------------------------------------
# Installing


@dataclass(frozen=True)
class ProgressEvent:
    """A status line for the CLI to render; the library never prints."""

    subject: str  # e.g. "QNN 2.49.40"
    step: str  # "create", "install", "verify", "ready", "skip", "failed"
    detail: str = ""
    elapsed_s: float | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def _no_progress(_: ProgressEvent) -> None:
    pass


@dataclass
class Installer:
    """Makes a virtual environment and installs requirements into it (uv, else venv + pip)."""

    kind: str  # "uv" or "pip"
    uv: str | None = None
    index: IndexConfig = field(default_factory=IndexConfig)

    @classmethod
    def choose(cls, kind: str = "auto", index: IndexConfig | None = None) -> Installer:
        if kind not in ("auto", "uv", "pip"):
            raise UsageError(f"Unknown installer {kind!r}.", hint="Choose auto, uv or pip.")
        index = index if index is not None else IndexConfig.from_pip()
        uv = find_uv() if kind in ("auto", "uv") else None
        if kind == "uv" and uv is None:
            raise ToolchainError("uv was asked for but is not installed.", hint="pip install uv, or use --installer pip.")
        return cls("uv" if uv else "pip", uv, index)

    def describe(self) -> str:
        if self.kind == "uv":
            out = self._run([self.uv or "uv", "--version"], timeout_s=60)
            return out.stdout.strip() or "uv"
        return f"pip {_installed('pip') or '?'}"

    def create_env(self, env_dir: Path) -> None:
        if self.kind == "uv":
            # --relocatable: the environment is built under a temporary name and renamed.
            cmd = [self.uv or "uv", "venv", "--quiet", "--relocatable", "--python", str(base_python()), str(env_dir)]
        else:
            cmd = [str(base_python()), "-m", "venv", str(env_dir)]
        self._check(self._run(cmd, timeout_s=600), "create the environment", [])

    def install(self, env_dir: Path, requirements: list[str]) -> None:
        python = env_python(env_dir)
        if self.kind == "uv":
            # pip picks the best version across all its indexes; uv's default stops at the
            # first index naming a package (e.g. a local mirror holding one old onnxruntime).
            cmd = [self.uv or "uv", "pip", "install", "--python", str(python), "--index-strategy", "unsafe-best-match"]
        else:
            cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        proc = self._run([*cmd, *self.index.installer_args(), *requirements], timeout_s=3600)
        self._check(proc, "install " + " ".join(requirements), requirements)

    def _run(self, cmd: list[str], *, timeout_s: float) -> subprocess.CompletedProcess:
        env = {**os.environ, **(self.index.uv_env() if self.kind == "uv" else {})}
        env.pop("VIRTUAL_ENV", None)  # uv would otherwise prefer an activated environment
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise ToolchainError(f"{cmd[0]} took longer than {timeout_s:.0f} s ({' '.join(cmd[1:3])}).") from None
        except OSError as exc:
            raise ToolchainError(f"Could not run {cmd[0]}: {exc.strerror or exc}.") from None

    def _check(self, proc: subprocess.CompletedProcess, what: str, requirements: list[str]) -> None:
        if proc.returncode == 0:
            return
        output = f"{proc.stdout}\n{proc.stderr}"
        if _is_disk_full(output):
            raise OSError(errno.ENOSPC, "No space left on device")
        if requirements and _looks_unfetchable(output):
            missing = unfetched_packages(output, requirements)
            raise ToolchainError(
                f"Could not fetch {', '.join(missing)} (no network, or not on the configured indexes: "
                f"{self.index.describe()}).",
                hint="Connect to the network or add a wheel directory to pip's find-links, then retry.",
            )
        raise ToolchainError(f"{self.kind} could not {what}: {_tail(output)}")


def base_python() -> Path:
    """The interpreter a toolchain is made from: the base one, not a (nox, CI) virtualenv's,
    which may be deleted while the toolchain lives on in the user cache."""
    base = getattr(sys, "_base_executable", None)
    return Path(base) if base and Path(base).exists() else Path(sys.executable)


def find_uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # the `uv` wheel ships its binary inside the package

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return None


_UNFETCHABLE = re.compile(
    r"not found in the (?:package registry|provided package locations|cache)|no matching distribution"
    r"|could not find a version|failed to fetch|failed to download|network (?:was|is) disabled"
    r"|dns error|connection (?:refused|reset|error)|name or service not known|temporary failure in name resolution"
    r"|timed out|network is unreachable|newconnectionerror",
    re.IGNORECASE,
)


def _looks_unfetchable(output: str) -> bool:
    return bool(_UNFETCHABLE.search(output))


def _is_disk_full(output: str) -> bool:
    return "no space left on device" in output.lower() or "errno 28" in output.lower()


def _normalize(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def unfetched_packages(output: str, requirements: Sequence[str]) -> list[str]:
    """The requirements an installer's failure output names as unavailable (all, if it names none)."""
    named = []
    lines = [ln for ln in output.splitlines() if _UNFETCHABLE.search(ln) or "because" in ln.lower()]
    text = _normalize(" ".join(lines))
    for req in requirements:
        dist = _normalize(re.split(r"[=<>!~\[ ]", req, maxsplit=1)[0])
        # Whole-name match: "onnxruntime" must not match inside "onnxruntime-qnn".
        if re.search(rf"(?<![\w-]){re.escape(dist)}(?![\w]|-[a-z])", text):
            named.append(req)
    return named or list(requirements)


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip() and "LIBNATIVE" not in ln]
    return " | ".join(kept[-lines:])[:600] or "no output"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(root: Path, spec: QnnToolchainSpec) -> None:
    """Leftovers of installs or removals whose process died (a killed one cannot clean up)."""
    for p in root.glob(f".{spec.name}.*"):
        m = re.match(rf"\.{re.escape(spec.name)}\.(?:partial|old|removing)-(\d+)(?:-|$)", p.name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def install_toolchain(
    spec: QnnToolchainSpec,
    *,
    root: Path | None = None,
    installer: Installer | str = "auto",
    force: bool = False,
    progress: ProgressCallback = _no_progress,
) -> ToolchainStatus:
    """Install one toolchain (or return it if it is already ready or is the main environment's).

    A broken toolchain is replaced; a ready one only with `force`. `installer` is an
    Installer or its kind ("auto": uv if found, else venv + pip).
    """
    subject = f"QNN {spec.qnn_version}"
    status = inspect_toolchain(spec, root)
    if status.state is ToolchainState.DEFAULT:
        progress(ProgressEvent(subject, "skip", "provided by the main environment"))
        return status
    if status.state is ToolchainState.READY and not force:
        progress(ProgressEvent(subject, "skip", f"already installed at {status.location}"))
        return status
    root = root or toolchains_root()
    final = toolchain_dir(spec, root)
    started = time.perf_counter()
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(root, spec)
        work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.partial-{os.getpid()}-", dir=root))
        work.chmod(0o755)  # mkdtemp makes it private; a toolchain is an ordinary directory
    except OSError as exc:
        raise _install_os_error(exc, spec, root) from None
    try:
        if isinstance(installer, str):
            installer = Installer.choose(installer)
        env_dir = work / ENV_DIR
        progress(ProgressEvent(subject, "create", f"environment with {installer.kind}", time.perf_counter() - started))
        installer.create_env(env_dir)
        progress(ProgressEvent(subject, "install", " ".join(spec.requirements()), time.perf_counter() - started))
        installer.install(env_dir, spec.requirements())
        progress(ProgressEvent(subject, "verify", "loading the QNN HTP backend", time.perf_counter() - started))
        probe = probe_python(env_python(env_dir))
        problems = probe_problems(spec, probe, env_dir)
        if problems:
            raise ToolchainError(
                f"The new QNN {spec.qnn_version} environment failed verification: {'; '.join(problems)}.",
                hint="Nothing was kept. The onnxruntime pairing in swiftformer_qnn/toolchains.py may need updating.",
            )
        marker = ToolchainMarker(
            qnn_version=spec.qnn_version,
            onnxruntime_qnn=spec.onnxruntime_qnn,
            onnxruntime=spec.onnxruntime,
            packages=probe.get("packages", {}),
            python=str(probe.get("python", "")),
            installer=installer.describe(),
            install_s=round(time.perf_counter() - started, 2),
        )
        write_text_atomic(work / MARKER_NAME, marker.model_dump_json(indent=2))
        _move_into_place(work, final)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise _install_os_error(exc, spec, root) from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    result = inspect_toolchain(spec, root)
    progress(ProgressEvent(subject, "ready", str(final), time.perf_counter() - started))
    return result


def _move_into_place(work: Path, final: Path) -> None:
    if final.exists():
        # Replace a broken (or, with force, an old) toolchain; its marker goes first so that
        # no moment exists at which a half-removed directory claims to be ready.
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        (final / MARKER_NAME).unlink(missing_ok=True)
        final.rename(old)
        work.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(final)


def _install_os_error(exc: OSError, spec: QnnToolchainSpec, root: Path) -> ToolchainError:
    if exc.errno == errno.ENOSPC:
        return ToolchainError(
            f"Disk full while installing the QNN {spec.qnn_version} toolchain into {root}; nothing was kept.",
            hint=f"Free about 400 MB or point {TOOLCHAINS_ENV} at another disk.",
        )
    return ToolchainError(f"Could not install the QNN {spec.qnn_version} toolchain into {root}: {exc.strerror or exc}.")


def install_toolchains(
    specs: Iterable[QnnToolchainSpec],
    *,
    root: Path | None = None,
    installer: Installer | str = "auto",
    force: bool = False,
    progress: ProgressCallback = _no_progress,
) -> list[ToolchainStatus]:
    """Install several toolchains one after the other (the installer's cache makes the shared
    onnxruntime wheel a one-time download); stops at the first failure."""
    specs = list(specs)
    todo = [s for s in specs if force or not inspect_toolchain(s, root).usable]
    if todo and isinstance(installer, str):
        installer = Installer.choose(installer)  # once: it reads pip's configuration
    return [install_toolchain(s, root=root, installer=installer, force=force, progress=progress) for s in specs]


def remove_toolchain(spec: QnnToolchainSpec, root: Path | None = None) -> Path | None:
    """Delete one toolchain; returns the directory removed, or None if there was none."""
    if main_environment_spec() == spec:
        raise UsageError(
            f"QNN {spec.qnn_version} is the main environment's own onnxruntime-qnn; there is nothing to remove."
        )
    d = toolchain_dir(spec, root)
    if not d.exists():
        return None
    # Marker first: a removal interrupted midway leaves a directory that reads as broken.
    try:
        (d / MARKER_NAME).unlink(missing_ok=True)
        trash = d.with_name(f".{d.name}.removing-{os.getpid()}")
        d.rename(trash)
        shutil.rmtree(trash)
    except OSError as exc:
        raise ToolchainError(f"Could not remove {d}: {exc.strerror or exc}.") from None
    return d
