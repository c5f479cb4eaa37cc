"""The fault battery, second round: exit codes by meaning (2 bad input or environment, 1 a failed
check, 0 a closed stdout pipe after the work is done), every wait bounded, and text from outside
escaped for where it goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gate_sim import synthetic_profile
from typer.testing import CliRunner

from swiftformer_qnn.cli import app

runner = CliRunner()
BLOCKS = {"stem": 300.0, "stage0.block0": 200.0, "stage3.block4": 500.0}


def one_error_line(res, code: int) -> str:
    err = res.stderr
    assert res.exit_code == code, (res.exit_code, res.output, err)
    assert "Traceback" not in res.output + err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _side(directory: Path, seed: int, scale: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(3):
        blocks = {b: t * scale * rng.lognormal(0, 0.01) for b, t in BLOCKS.items()}
        p = synthetic_profile(sum(blocks.values()) * rng.lognormal(0, 0.01, 20), blocks, job_id=f"j{seed}{i}")
        p.save(directory / f"job{i}" / "l1-w8a8.profile.json")
    return directory


def _cli(tmp_path: Path, *args: str, close_stdout: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100", "GITHUB_STEP_SUMMARY": ""}
    env.pop("GITHUB_STEP_SUMMARY")
    proc = subprocess.Popen([sys.executable, "-m", "swiftformer_qnn.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    if close_stdout:
        proc.stdout.close()  # the reader is gone before the command prints: `... | head -0`
        err = proc.stderr.read()
        proc.wait(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, b"", err)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("scale, code", [(1.0, 0), (1.5, 1)])
def test_a_closed_stdout_pipe_keeps_the_commands_own_exit_code(tmp_path, scale, code):
    """`gate latency ... | head -1` in CI: a pass stays 0 and a regression stays 1; the lost
    output is neither a failure nor a traceback."""
    base, cand = _side(tmp_path / "base", 1), _side(tmp_path / "cand", 2, scale)
    args = ("gate", "latency", "-b", str(base), "-c", str(cand))
    assert _cli(tmp_path, *args, close_stdout=False).returncode == code  # the same run, read to the end
    done = _cli(tmp_path, *args, close_stdout=True)
    assert done.returncode == code, done.stderr.decode()
    assert b"Traceback" not in done.stderr and b"Broken pipe" not in done.stderr and b"BrokenPipe" not in done.stderr
