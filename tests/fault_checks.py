"""What the fault tests (test_faults*.py) check of a failed command, written once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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


def processes_naming(path: Path) -> dict[int, str]:
    """Live processes whose command line names `path` (a worker's arguments name its folder),
    by process id."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text:
            found[int(cmdline.parent.name)] = text
    return found
