"""Every command read at 80 columns, as a user's terminal shows it (COLUMNS=80), from a working
directory like theirs (relative paths under it):

- no line is wider than 80 cells, except an `error:` line (one line by contract, so scripts can
  read it; the terminal wraps it) and a path too long for any line, alone on its own (printed
  whole: the terminal wraps it, a copy takes it entire);
- no word and no path is split or cut: everything a command prints outside its tables is rendered
  again at 1000 columns, and every word of that wide rendering must appear whole at 80 (rich
  wraps at spaces; what it would fold is a word longer than the line). Tables are `FitTable`s,
  whose narrow layouts (short headers, names shortened in the middle) test_terminal_width checks;
- every command that succeeds ends with a `Next:` line and the command to run.

The longest line seen is printed (`-s` shows it): the figure the README's closing note quotes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console, Group
from rich.table import Table
from test_gate_cli import write_side
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.core.tables import FitTable
from swiftformer_qnn.report.terminal import HeadlineTable

REPO = Path(__file__).resolve().parents[1]
WIDTH = 80
runner = CliRunner()
LONGEST: dict[str, int] = {}


def _plain(renderable, width: int, kw: dict) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)
    console.print(renderable, **{k: v for k, v in kw.items() if k in ("soft_wrap", "highlight", "markup")})
    return console.export_text()


def _flat(objects) -> list:
    out = []
    for obj in objects:
        out += _flat(obj.renderables) if isinstance(obj, Group) else [obj]
    return out


def run(args: list[str], monkeypatch, expect: int = 0) -> tuple[str, list[str]]:
    """The command's output at 80 columns, and the words of its non-table prints at 1000."""
    calls: list[tuple[tuple, dict]] = []
    real_print = Console.print

    def spy(self, *objects, **kw):
        calls.append((objects, kw))
        return real_print(self, *objects, **kw)

    monkeypatch.setattr(Console, "print", spy)
    res = runner.invoke(app, args, env={"COLUMNS": str(WIDTH), "GITHUB_STEP_SUMMARY": None})
    monkeypatch.setattr(Console, "print", real_print)
    assert res.exit_code == expect, f"{args}: exit {res.exit_code}\n{res.output}\n{res.exception!r}"
    words: list[str] = []
    for objects, kw in calls:
        for obj in _flat(objects):
            if isinstance(obj, (FitTable, Table, HeadlineTable)):
                continue
            words += _plain(obj, 1000, kw).split()
    return res.stdout + res.stderr, words


def _lone_path(line: str) -> bool:
    """A line that is one path (maybe after a short label) too long for any line: printed whole, so
    the terminal wraps it and a copy takes it entire."""
    words = line.split()
    return bool(words) and "/" in words[-1] and cell_len(words[-1]) > WIDTH - 12 and len(words) <= 2


def assert_reads_at_80(name: str, text: str, wide_words: list[str], *, next_line: bool = True) -> None:
    lines = text.splitlines()
    LONGEST[name] = max((cell_len(line) for line in lines), default=0)
    too_wide = [line for line in lines if cell_len(line) > WIDTH and not line.startswith("error:")
                and not _lone_path(line)]
    assert not too_wide, f"{name}: {len(too_wide)} line(s) wider than {WIDTH}:\n" + "\n".join(too_wide)
    narrow = set(text.split())
    split = sorted({w for w in wide_words if w not in narrow})
    assert not split, f"{name}: words or paths split or cut at {WIDTH} columns: {split}\n{text}"
    if next_line:
        at = [i for i, line in enumerate(lines) if line.startswith("Next:")]
        assert at and any(line.startswith("  ") for line in lines[at[-1] + 1:]), \
            f"{name}: no Next: line with a command\n{text}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A user's directory: the committed profiles, and an export of the standalone block at 16x16."""
    root = tmp_path_factory.mktemp("user")
    shutil.copytree(REPO / "profiles", root / "profiles")
    return root


def test_every_command_reads_at_80_columns(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    cases = [
        ("--version", ["--version"], 0, False),
        ("variants", ["variants"], 0, True),
        ("export", ["export", "--variant", "encoder", "--resolution", "16"], 0, True),
        ("export (rerun)", ["export", "--variant", "encoder", "--resolution", "16"], 0, True),
        ("export --until onnx", ["export", "--variant", "encoder", "--resolution", "16", "--until", "onnx"], 0, True),
        ("profile --local", ["profile", "--local", "--from", "build/encoder-d96x16-w8a8-sm8550",
                             "--out", "build/profiles/local"], 0, True),
        ("diagnose", ["diagnose", "build/encoder-d96x16-w8a8-sm8550"], 0, True),
        ("report", ["report", "profiles/reference", "profiles/emulator", "build/profiles/local",
                    "--name", "first-look"], 0, True),
        ("gate structure", ["gate", "structure", "-b", "profiles/baselines/compile-l1-w8a8-sm8550-qnn2-51-0",
                            "-c", "build/encoder-d96x16-w8a8-sm8550", "--allow-mismatch"], None, True),
        ("toolchains list", ["toolchains", "list"], 0, True),
        ("cache", ["cache"], 0, True),
        ("bad input", ["export", "--variant", "l9"], 2, False),
    ]  # fmt: skip
    write_side(workdir / "gate-base", 1, 5)
    write_side(workdir / "gate-slow", 3, 5, block_scale={"stage0.block0": 1.4})
    cases.append(("gate latency", ["gate", "latency", "-b", "gate-base", "-c", "gate-slow"], 1, True))
    for name, args, expect, next_line in cases:
        if expect is None:  # gate structure: pass or fail, whichever the compiles give; it must read either way
            res = runner.invoke(app, args, env={"COLUMNS": str(WIDTH)})
            expect = res.exit_code
            assert expect in (0, 1), res.output
        text, words = run(args, monkeypatch, expect)
        assert_reads_at_80(name, text, words, next_line=next_line)
    with capsys.disabled():
        worst = max(LONGEST, key=LONGEST.get)
        print(f"\nlongest line at {WIDTH} columns: {LONGEST[worst]} ({worst}); per command: {LONGEST}")


def test_the_check_catches_a_cut_path_and_a_long_line():
    path = "build/profiles/20261201-120000/l1-w8a8-qnn2.51.0-htp-emulator-x86-64.profile.json"
    folded = _plain(f"profile written to {path} and more", WIDTH, {})
    with pytest.raises(AssertionError, match="split or cut"):
        assert_reads_at_80("t", folded, f"profile written to {path} and more".split(), next_line=False)
    with pytest.raises(AssertionError, match="wider than"):
        assert_reads_at_80("t", "x" * 81, [], next_line=False)
