"""Toolchain directories laid out as an install leaves them, for tests of states and failures.

The environment's `python` is whatever the test needs: the running interpreter (which then
imports the main environment's onnxruntime-qnn, i.e. the wrong QNN version), or a shell script
standing in for a worker that crashes or reports a failure.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from swiftformer_qnn.toolchains import (
    CACHE_DIR,
    COMMON_REQUIREMENTS,
    ENV_DIR,
    MARKER_NAME,
    TOOLCHAINS_ENV,
    QnnToolchainSpec,
    ToolchainMarker,
    toolchain_dir,
)

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"

CRASHING_WORKER = "#!/bin/sh\nkill -SEGV $$\n"
EXITING_WORKER = "#!/bin/sh\necho 'error while loading shared libraries: libQnnHtp.so' >&2\nexit 7\n"
# Writes a failure result as the real worker does when the HTP rejects an op.
REJECTING_WORKER = """#!/bin/sh
while [ $# -gt 0 ]; do
  if [ "$1" = "--result" ]; then out="$2"; fi
  shift
done
printf '%s' '{"status": "failed", "error_type": "HtpUnsupportedError", "message": "The QNN HTP rejects 1 node(s) of m.onnx: Gelu at stage0.block0.mlp."}' > "$out"
exit 3
"""


def running_interpreter_script() -> str:
    """A script that runs the test's own interpreter.

    Not a symlink: a link to a venv's python, placed outside that venv, finds no `pyvenv.cfg`
    beside it and starts the base installation, which lacks the venv's onnxruntime.
    """
    return f'#!/bin/sh\nexec "{sys.executable}" "$@"\n'


def make_fake_toolchain(
    root: Path,
    spec: QnnToolchainSpec,
    *,
    python_script: str | None = None,
    marker: bool = True,
    marker_spec: QnnToolchainSpec | None = None,
    dist_infos: bool = True,
) -> Path:
    """A toolchain directory for `spec` under `root`; returns the directory."""
    d = toolchain_dir(spec, root)
    env = d / ENV_DIR
    (env / "bin").mkdir(parents=True)
    python = env / "bin" / "python"
    python.write_text(python_script or running_interpreter_script())
    python.chmod(0o755)
    site = env / "lib" / PY / "site-packages"
    site.mkdir(parents=True)
    if dist_infos:
        common = [tuple(req.split("==")) for req in COMMON_REQUIREMENTS]
        for dist, ver in (("onnxruntime_qnn", spec.onnxruntime_qnn), ("onnxruntime", spec.onnxruntime), *common):
            (site / f"{dist.replace('-', '_')}-{ver}.dist-info").mkdir()
    if marker:
        m = marker_spec or spec
        (d / MARKER_NAME).write_text(
            ToolchainMarker(
                qnn_version=m.qnn_version,
                onnxruntime_qnn=m.onnxruntime_qnn,
                onnxruntime=m.onnxruntime,
                packages={},
                python=PY,
                installer="test",
                install_s=0.0,
            ).model_dump_json()
        )
    return d


def leftovers(root: Path) -> list[str]:
    """Everything under `root` (names only) but the installers' download cache, which is kept
    like pip's and uv's own: to show an install left nothing behind."""
    return sorted(n for n in os.listdir(root) if n != CACHE_DIR) if root.exists() else []


def user_toolchains_root() -> Path:
    """Where slow tests keep real toolchains: the user cache directory (not the per-session
    test cache), so reruns reuse the installs."""
    env = os.environ.get(TOOLCHAINS_ENV)
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("swiftformer-qnn")) / "toolchains"
