"""The worker protocol: how a toolchain's interpreter runs `swiftformer_qnn.htp.worker`
(only this package on its path, nothing of the main environment), and what its probe must say."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .registry import QnnToolchainSpec


def package_shim(dest: Path) -> Path:
    """A directory holding only a link to this package, for a worker's PYTHONPATH.

    Putting the package's parent on PYTHONPATH instead would, for a non-editable install,
    put the main site-packages (and its onnxruntime) ahead of the toolchain's own.
    """
    dest.mkdir(parents=True, exist_ok=True)
    link = dest / "swiftformer_qnn"
    if not link.exists():
        pkg = Path(__file__).resolve().parents[1]  # swiftformer_qnn/
        try:
            link.symlink_to(pkg, target_is_directory=True)
        except OSError:  # no symlinks (some filesystems): a copy of the pure-Python package
            shutil.copytree(pkg, link, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


PYCACHE_DIR = "pycache"  # in an installed toolchain's directory: the bytecode of what its worker imports


def worker_env(shim: Path, pycache: Path | None = None) -> dict[str, str]:
    """The environment of a worker process: only the shim on the path, no user site.

    With `pycache` (a directory of an installed toolchain's own), Python keeps the bytecode of
    everything the worker imports there, even where the caller's environment says
    PYTHONDONTWRITEBYTECODE: a sweep starts one worker per QNN version, and compiling numpy,
    onnxruntime and pydantic from source in each cost it ~0.3 s more (0.57 s vs 0.27 s of
    imports, measured on 2 loaded cores). The bytecode goes to that directory only, never
    beside the user's files, and goes with the toolchain when it is removed.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(shim)
    env["PYTHONNOUSERSITE"] = "1"
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def worker_command(python: Path, *args: str) -> list[str]:
    return [str(python), "-s", "-m", "swiftformer_qnn.htp.worker", *args]


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


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip() and "LIBNATIVE" not in ln]
    return " | ".join(kept[-lines:])[:600] or "no output"
