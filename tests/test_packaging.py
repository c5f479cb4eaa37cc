"""The wheel carries what the main job needs: run from an unpacked wheel, away from the source
tree, the package finds the shipped calibration and held-out photographs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from swiftformer_qnn.pipeline.images import find_images

REPO = Path(__file__).resolve().parents[1]


def _build_wheel(tmp_path: Path) -> Path:
    # From a copy: setuptools builds in the source tree's build/, whose stale files would reach the wheel.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in ("swiftformer_qnn", "calibration"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-input", "-q",
         "-w", str(dist), str(src)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = dist.glob("swiftformer_qnn-*.whl")
    return wheel


def test_the_wheel_ships_the_photographs_and_finds_them_away_from_the_source_tree(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("images", "heldout"):
        shipped = sorted(p.name for p in (REPO / "calibration" / folder).iterdir())
        assert shipped and all(f"swiftformer_qnn/calibration/{folder}/{n}" in names for n in shipped)
    assert {"swiftformer_qnn/calibration/PROVENANCE.md", "swiftformer_qnn/calibration/provenance.json"} <= names
    # Only the package: no stray top-level `calibration` package in site-packages.
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"swiftformer_qnn"}

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import json; from swiftformer_qnn.pipeline.images import *; "
        "c, h = find_images(default_calibration_images()), find_images(default_heldout_images()); "
        "print(json.dumps([str(shipped_calibration_dir()), len(c.files), len(h.files)]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "SWIFTFORMER_QNN_CALIBRATION"}
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
                          cwd=elsewhere, env=env, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, n_calibration, n_heldout = json.loads(proc.stdout)
    assert Path(where) == site / "swiftformer_qnn" / "calibration"
    shipped = [len(find_images(REPO / "calibration" / f).files) for f in ("images", "heldout")]
    assert [n_calibration, n_heldout] == shipped
