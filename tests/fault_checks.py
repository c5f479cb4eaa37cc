"""What the fault tests (test_faults*.py) check of a failed command, written once."""

from __future__ import annotations

import subprocess
import sys


def one_error_line(res, code: int) -> str:
    """The run failed with `code` and said so in exactly one line, without a traceback."""
    err = res.stderr
    assert res.exit_code == code, (res.exit_code, res.output, err)
    assert "Traceback" not in res.output + err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def dead_pid() -> int:
    """The id of a process that has ended (a lock or a leftover its owner can no longer hold)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid
