"""Real signals to a real `swiftformer-qnn export` process at different stages: Ctrl-C and
SIGTERM print one line, remove partial outputs and cache temp dirs, and exit 130 / 143;
after SIGKILL (no cleanup possible) the next run removes what the dead one left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swiftformer_qnn.pipeline.artifacts import read_manifest

ARGS = ["export", "--variant", "encoder", "--resolution", "16", "--calibration-count", "4", "--heldout-count", "2"]


def _start(tmp_path: Path, extra: list[str]) -> tuple[subprocess.Popen, Path]:
    err = tmp_path / "stderr.txt"
    env = {**os.environ, "SWIFTFORMER_QNN_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "swiftformer_qnn.cli", *ARGS, *extra, "--output-dir", str(tmp_path / "out" / "enc")],
        stdout=subprocess.DEVNULL, stderr=open(err, "w"), env=env, cwd=tmp_path,
    )
    return proc, err


def _wait_for(proc: subprocess.Popen, tmp_path: Path, stage: str) -> None:
    """Until `stage` is producing its result (its temp dir in the stage cache exists): no timing assumptions."""
    where = tmp_path / "cache" / "stages" / stage
    while not (where.is_dir() and any(".tmp-" in p.name for p in where.iterdir())):
        if proc.poll() is not None:
            pytest.fail(f"finished before stage {stage!r} ran")
        time.sleep(0.02)


def _leftovers(tmp_path: Path) -> list[str]:
    out = tmp_path / "out"
    found = [p.name for p in out.iterdir()] if out.exists() else []
    found += [str(p.relative_to(tmp_path)) for p in (tmp_path / "cache").rglob(".*")]
    return found


@pytest.mark.parametrize("sig, stage, code", [
    (signal.SIGINT, "export", 130),
    (signal.SIGTERM, "inputs", 143),
    (signal.SIGTERM, "quantize", 143),
])
def test_interrupt_prints_one_line_cleans_up_and_exits_128_plus_signal(tmp_path, sig, stage, code):
    proc, err = _start(tmp_path, [])
    _wait_for(proc, tmp_path, stage)
    proc.send_signal(sig)
    assert proc.wait(timeout=300) == code, err.read_text()[-3000:]
    text = err.read_text()
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and ("Interrupted" in lines[0] or "Stopped by SIGTERM" in lines[0]), text[-1500:]
    assert _leftovers(tmp_path) == []  # no partial output, no cache temp dir
    assert not (tmp_path / "out" / "enc").exists()


def test_after_sigkill_the_next_run_removes_the_leftovers_and_finishes(tmp_path):
    proc, err = _start(tmp_path, ["--until", "quantize"])
    _wait_for(proc, tmp_path, "quantize")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    left = _leftovers(tmp_path)
    assert any(".enc.partial-" in name for name in left), left  # killed: nothing could clean up
    assert any(".tmp-" in name for name in left), left
    assert not (tmp_path / "out" / "enc").exists()  # and nothing that looks complete

    again, err = _start(tmp_path, ["--until", "quantize"])
    assert again.wait(timeout=600) == 0, err.read_text()[-2000:]
    assert _leftovers(tmp_path) == ["enc"]
    manifest = read_manifest(tmp_path / "out" / "enc")
    assert manifest is not None and manifest.stage("quantize") is not None
    assert "interrupted run" in err.read_text()  # said what it removed

