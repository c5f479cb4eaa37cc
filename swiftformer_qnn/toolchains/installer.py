"""Installing and removing toolchains: a virtual environment per QNN version (uv, else venv +
pip, with pip's configured indexes), built in a temporary sibling, verified, marked ready
and only then renamed into place."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.atomic import tree_bytes, write_text_atomic
from ..core.errors import ToolchainError, UsageError
from ..core.output_dir import recover_leftovers, swap_in, temp_dir
from .registry import QnnToolchainSpec, _installed, main_environment_spec
from .state import (
    CACHE_DIR,
    ENV_DIR,
    MARKER_NAME,
    TOOLCHAINS_ENV,
    ToolchainMarker,
    ToolchainState,
    ToolchainStatus,
    env_python,
    inspect_toolchain,
    resolve_toolchains,
    toolchain_dir,
    toolchain_exclusive,
    toolchains_root,
)
from .worker import _tail, probe_problems, probe_python


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
        for key in (
            "index-url",
            "extra-index-url",
            "find-links",
            "no-index",
            "cert",
            "default-timeout",
            "timeout",
        ):
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
    # The download cache: under the toolchains' root (so SWIFTFORMER_QNN_TOOLCHAINS or
    # SWIFTFORMER_QNN_CACHE move it too), not the installer's own ~/.cache/uv or ~/.cache/pip.
    cache_dir: Path | None = None

    @classmethod
    def choose(cls, kind: str = "auto", index: IndexConfig | None = None) -> Installer:
        if kind not in ("auto", "uv", "pip"):
            raise UsageError(f"Unknown installer {kind!r}.", hint="Choose auto, uv or pip.")
        index = index if index is not None else IndexConfig.from_pip()
        uv = find_uv() if kind in ("auto", "uv") else None
        if kind == "uv" and uv is None:
            raise ToolchainError(
                "uv was asked for but is not installed.", hint="pip install uv, or use --installer pip."
            )
        return cls("uv" if uv else "pip", uv, index)

    def describe(self) -> str:
        if self.kind == "uv":
            out = self._run([self.uv or "uv", "--version"], timeout_s=60)
            return out.stdout.strip() or "uv"
        return f"pip {_installed('pip') or '?'}"

    def create_env(self, env_dir: Path) -> None:
        if self.kind == "uv":
            # --relocatable: the environment is built under a temporary name and renamed.
            cmd = [
                self.uv or "uv",
                "venv",
                "--quiet",
                "--relocatable",
                "--python",
                str(base_python()),
                str(env_dir),
            ]
        else:
            cmd = [str(base_python()), "-m", "venv", str(env_dir)]
        self._check(self._run(cmd, timeout_s=600), "create the environment", [])

    def install(self, env_dir: Path, requirements: list[str]) -> None:
        python = env_python(env_dir)
        if self.kind == "uv":
            # pip picks the best version across all its indexes; uv's default stops at the
            # first index naming a package (e.g. a local mirror holding one old onnxruntime).
            cmd = [
                self.uv or "uv",
                "pip",
                "install",
                "--python",
                str(python),
                "--index-strategy",
                "unsafe-best-match",
            ]
        else:
            cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        proc = self._run([*cmd, *self.index.installer_args(), *requirements], timeout_s=3600)
        self._check(proc, "install " + " ".join(requirements), requirements)

    def _run(self, cmd: list[str], *, timeout_s: float) -> subprocess.CompletedProcess:
        env = {**os.environ, **(self.index.uv_env() if self.kind == "uv" else {})}
        env.pop("VIRTUAL_ENV", None)  # uv would otherwise prefer an activated environment
        if self.cache_dir is not None:
            env["UV_CACHE_DIR" if self.kind == "uv" else "PIP_CACHE_DIR"] = str(self.cache_dir / self.kind)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise ToolchainError(
                f"{cmd[0]} took longer than {timeout_s:.0f} s ({' '.join(cmd[1:3])})."
            ) from None
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
        recover_leftovers(root, spec.name)  # of installs or removals whose process died
        work = temp_dir(root, spec.name)
        work.chmod(0o755)  # mkdtemp makes it private; a toolchain is an ordinary directory
    except OSError as exc:
        raise _install_os_error(exc, spec, root) from None
    try:
        if isinstance(installer, str):
            installer = Installer.choose(installer)
        if installer.cache_dir is None:
            installer.cache_dir = root / CACHE_DIR
        cached_before = tree_bytes(installer.cache_dir)
        env_dir = work / ENV_DIR
        progress(
            ProgressEvent(
                subject, "create", f"environment with {installer.kind}", time.perf_counter() - started
            )
        )
        installer.create_env(env_dir)
        progress(
            ProgressEvent(subject, "install", " ".join(spec.requirements()), time.perf_counter() - started)
        )
        installer.install(env_dir, spec.requirements())
        progress(
            ProgressEvent(subject, "verify", "loading the QNN HTP backend", time.perf_counter() - started)
        )
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
        swap_in(work, final)  # atomic: `final` is the old toolchain or the new one, never half of one
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise _install_os_error(exc, spec, root) from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    result = inspect_toolchain(spec, root)
    downloaded = max(0, tree_bytes(installer.cache_dir) - cached_before)
    progress(
        ProgressEvent(
            subject, "ready", f"{final} ({downloaded / 1e6:.0f} MB downloaded)", time.perf_counter() - started
        )
    )
    return result


def _install_os_error(exc: OSError, spec: QnnToolchainSpec, root: Path) -> ToolchainError:
    if exc.errno == errno.ENOSPC:
        return ToolchainError(
            f"Disk full while installing the QNN {spec.qnn_version} toolchain into {root}; nothing was kept.",
            hint=f"Free about 400 MB or point {TOOLCHAINS_ENV} at another disk.",
        )
    return ToolchainError(
        f"Could not install the QNN {spec.qnn_version} toolchain into {root}: {exc.strerror or exc}."
    )


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
    return [
        install_toolchain(s, root=root, installer=installer, force=force, progress=progress) for s in specs
    ]


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
        with toolchain_exclusive(d, f"QNN {spec.qnn_version}"):  # never from under a running worker
            (d / MARKER_NAME).unlink(missing_ok=True)
            trash = d.with_name(f".{d.name}.removing-{os.getpid()}")
            d.rename(trash)
        shutil.rmtree(trash)
    except OSError as exc:
        raise ToolchainError(f"Could not remove {d}: {exc.strerror or exc}.") from None
    return d



def ensure_toolchains(
    specs: Sequence[QnnToolchainSpec],
    *,
    install: bool = True,
    root: Path | None = None,
    installer: Installer | str = "auto",
    progress: ProgressCallback = _no_progress,
) -> list[ToolchainStatus]:
    """The usable toolchains for `specs`, installing the missing (and broken) ones first, the
    way nox or pre-commit make their environments on first use; with `install=False`, a
    ToolchainError naming what is missing instead. A failed install keeps nothing."""
    statuses = [inspect_toolchain(s, root) for s in specs]
    todo = [s.spec for s in statuses if not s.usable]
    if not todo:
        return statuses
    if not install:
        return resolve_toolchains(specs, root)  # raises, naming every missing or broken one
    progress(
        ProgressEvent(
            "QNN toolchains",
            "install",
            f"first use of {', '.join(s.qnn_version for s in todo)}: one environment each (--no-install to refuse)",
        )
    )
    if isinstance(installer, str):
        installer = Installer.choose(installer)  # once: it reads pip's configuration
    def one_line(event: ProgressEvent) -> None:  # each toolchain's final line, with what it downloaded
        if event.step == "ready":
            progress(event)

    for spec in todo:
        install_toolchain(spec, root=root, installer=installer, progress=one_line)
    return resolve_toolchains(specs, root)
