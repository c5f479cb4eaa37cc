"""Every table and help text read at 80 and 120 columns: nothing wider than the terminal, and no
number, block name, version or status cut (rich's default is to end a squeezed cell in "…")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console
from test_gate_cli import BLOCKS, write_side
from toolchain_fakes import make_fake_toolchain
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.cli.profile import render_run
from swiftformer_qnn.cli.toolchains import render_cross_version
from swiftformer_qnn.core.tables import Col, FitTable, shorten_middle
from swiftformer_qnn.htp.record import CompileRecord
from swiftformer_qnn.htp.sweep import CrossVersionReport, VersionResult, consecutive_diffs
from swiftformer_qnn.measure.agreement import Agreement
from swiftformer_qnn.measure.schema import block_times, load_profile
from swiftformer_qnn.profiling.devices import Backend
from swiftformer_qnn.profiling.orchestrate import ProfiledModel, ProfileRunResult
from swiftformer_qnn.toolchains import TOOLCHAINS, TOOLCHAINS_ENV, get_toolchain_spec

REPO = Path(__file__).resolve().parents[1]
EMULATOR_L1 = REPO / "profiles" / "emulator" / "l1-w8a8-qnn2.51.0-htp-emulator-x86-64.profile.json"
WIDTHS = (80, 120)
runner = CliRunner()
# A figure that ends in an ellipsis, or an ellipsis right before a digit: part of a number hidden.
# Only a standalone figure counts: a path or name shortened in the middle ("/tmp/swiftf…2ocA2f/venv")
# may put a digit next to the ellipsis, and shortening names in the middle is the design.
CUT_NUMBER = re.compile(r"(?<![\w/.-])\d[\d,.]*…|…[\d,.]*\d(?![\w/-])")


def assert_readable(text: str, width: int, intact: list[str], *, numbers_checked: bool = True) -> None:
    too_wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert not too_wide, f"{len(too_wide)} line(s) wider than {width}:\n" + "\n".join(too_wide)
    missing = [s for s in intact if s not in text]
    assert not missing, f"cut or missing at {width} columns: {missing}\n{text}"
    if numbers_checked:
        assert not CUT_NUMBER.search(text), text


def render(renderable, width: int) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)
    console.print(renderable)
    return console.export_text()


# ---------------------------------------------------------------------------- the layout itself


def test_shorten_middle_keeps_both_ends():
    name = "/stage2/block9_swiftformer_encoder/attention/to_query/MatMul"
    short = shorten_middle(name, 21)
    assert cell_len(short) == 21 and short.startswith("/stage2/bl") and short.endswith("query/MatMul"[-10:])
    assert "…" in short and shorten_middle("stem", 10) == "stem"


def _table(n_numbers: int) -> FitTable:
    columns = [Col("block", "key"), Col("operation name", "name", short="op", min_width=10)]
    columns += [Col(f"time number {k} (cycles)", "number", short=f"t{k}") for k in range(n_numbers)]
    rows = [["stage2.block9", "/stage2/block9/attention/to_query/MatMul", *(f"{291_671_212 + k:,}" for k in range(n_numbers))],
            ["head", "/head/Gemm", *("" for _ in range(n_numbers))]]  # fmt: skip
    return FitTable(columns, rows, title="t")


def test_a_table_that_fits_is_printed_as_is():
    text = render(_table(2), 200)
    assert "time number 0 (cycles)" in text and "/stage2/block9/attention/to_query/MatMul" in text


def test_a_narrow_terminal_gets_short_headers_then_shortened_names_never_cut_numbers():
    text = render(_table(2), 60)
    assert_readable(text, 60, ["stage2.block9", "291,671,212", "291,671,213", "t0", "t1"], numbers_checked=False)
    assert "time number" not in text and "…" in text  # short headers; the op name lost its middle


def test_a_table_too_wide_for_the_terminal_is_split_and_repeats_its_key():
    text = render(_table(6), 60)
    assert_readable(text, 60, [f"{291_671_212 + k:,}" for k in range(6)], numbers_checked=False)
    assert text.count("stage2.block9") >= 2  # the key column starts every part
    # A continuation part leaves out rows it has nothing for ("head" has no times).
    assert text.count("│ head ") == 1


# ---------------------------------------------------------------------------- every command's tables


@pytest.mark.parametrize("width", WIDTHS)
def test_profile_tables(width):
    profile = load_profile(EMULATOR_L1)
    result = ProfileRunResult(Backend.EMULATOR, "htp-emulator", Path("build/profiles/20261201-120000"),
                              [ProfiledModel("l1-w8a8-qnn2.51.0", profile, {"profile": Path("l1.profile.json")})])
    console = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)
    render_run(console, result)
    text = console.export_text()
    blocks = block_times(profile)
    intact = [name for name in blocks]
    intact += [f"{b.time:,.0f}" for b in blocks.values()] + [f"{b.share:.1%}" for b in blocks.values()]
    intact += [f"{t:,.0f}" for b in blocks.values() for t in b.parts.values()]
    # Op names may lose their middle; the numbers and blocks beside them may not.
    assert_readable(text, width, intact, numbers_checked=False)
    assert "stage0.bl…" not in text


@pytest.mark.parametrize("width", WIDTHS)
def test_gate_table(width, tmp_path):
    base = write_side(tmp_path / "base", 1, 5)
    slow = write_side(tmp_path / "slow", 3, 5, block_scale={"stage0.block0": 1.4})
    res = runner.invoke(app, ["gate", "latency", "-b", str(base), "-c", str(slow)],
                        env={"COLUMNS": str(width), "GITHUB_STEP_SUMMARY": None})  # fmt: skip
    assert res.exit_code == 1, res.output
    table = res.stdout.split("\nnote:")[0].split("\nFAIL ")[0]  # messages after it: soft-wrapped lines
    assert_readable(table, width, [*BLOCKS, "model", "regression", "unchanged", "+42.0% (+41.8 us)", "100.0%"])


@pytest.mark.parametrize("width", WIDTHS)
def test_toolchains_list(width, tmp_path, monkeypatch):
    monkeypatch.setenv(TOOLCHAINS_ENV, str(tmp_path / "a-toolchain-root-deep-in-some-home-directory-tree"))
    root = tmp_path / "a-toolchain-root-deep-in-some-home-directory-tree"
    make_fake_toolchain(root, get_toolchain_spec("2.49"))
    make_fake_toolchain(root, get_toolchain_spec("2.48"), marker=False)
    res = runner.invoke(app, ["toolchains", "list"], env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    intact = [s.qnn_version for s in TOOLCHAINS] + [s.onnxruntime_qnn for s in TOOLCHAINS]
    intact += ["not installed", "ready", "broken:", "qnn-2.49.40"]
    assert_readable(res.stdout, width, intact)


@pytest.mark.parametrize("width", WIDTHS)
def test_cross_version_table(width, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))

    def version(v: str, **kw) -> VersionResult:
        spec = get_toolchain_spec(v)
        pins = {"qnn_version": spec.qnn_version, "onnxruntime_qnn": spec.onnxruntime_qnn, "onnxruntime": spec.onnxruntime}
        if "error" in kw:
            return VersionResult(**pins, status="failed", **kw)
        record = CompileRecord(**pins, ep_sdk_version=None, soc="sm8550", soc_model=43, htp_arch=73, fp16=False,
                               model_sha256="0" * 64, compile_s=12.25, context_binary_bytes=13_140_000,
                               context_binary_sha256="1" * 64, op_trace="qnn_op_trace.json", htp_op_count=431,
                               htp_op_types=kw.pop("types"))
        return VersionResult(**pins, status="ok", compile=record,
                             fidelity=Agreement(samples=1, sqnr_db=23.9, exact=False, cosine_mean=0.99812,
                                                cosine_min=0.99812, max_abs_diff=0.3125, reference_max_abs=1.0), **kw)  # fmt: skip

    versions = [version("2.48", types={"Conv2d": 57, "Gelu": 26}),
                version("2.49", error="HtpUnsupportedError: The QNN HTP rejects 1 node(s) of m.onnx: Gelu at stage0.block0.mlp."),
                version("2.51", types={"Conv2d": 57, "Gelu": 25, "ElementWiseMultiply": 1})]  # fmt: skip
    report = CrossVersionReport(model="model.qdq.onnx", model_sha256="0" * 64, soc_model=43, htp_arch=73, fp16=False,
                                emulated=True, jobs=2, wall_s=30.0, versions=versions,
                                diffs=consecutive_diffs(versions))  # fmt: skip
    render_cross_version(report)
    text = capsys.readouterr().out
    intact = ["2.48.40", "2.49.40", "2.51.0", "2.4.0", "2.7.0", "12.25", "13.14", "431", "0.3125", "0.99812", "23.9"]
    assert_readable(text, width, intact)


@pytest.mark.parametrize("width", WIDTHS)
def test_report_headline(width, tmp_path):
    res = runner.invoke(app, ["report", str(REPO / "profiles" / "reference"), str(REPO / "profiles" / "emulator"),
                              "--out", str(tmp_path / "r")], env={"COLUMNS": str(width)})  # fmt: skip
    assert res.exit_code == 0, res.output
    # The files and the Next: command after the table are printed whole (tests/test_eighty_columns.py).
    table = res.stdout.split("\nWrote ")[0]
    assert_readable(table, width, ["2.63 ms", "2.26 ms", "2.43 ms", "2.17 ms", "1.69 ms", "1.70 ms"])


@pytest.mark.parametrize("width", WIDTHS)
def test_variants_table(width):
    res = runner.invoke(app, ["variants"], env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    assert_readable(res.stdout, width, ["SwiftFormer-L1", "12.1", "80.9", "1x96x64x64"])


# ---------------------------------------------------------------------------- help texts


def _commands(group, prefix=()):
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))


def _all_commands():
    import typer

    return [(), *_commands(typer.main.get_command(app))]


PLACEHOLDER = re.compile(r"<(bool|str|int|float|path|Path|list\[[^\]]*\]|int range|float range)>")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", _all_commands(), ids=lambda c: " ".join(c) or "top")
def test_help_has_no_type_placeholders_and_fits(command, width):
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    assert not PLACEHOLDER.search(res.stdout), res.stdout
    assert all(cell_len(line) <= width for line in res.stdout.splitlines()), res.stdout


def test_top_level_help_at_120_gives_each_command_one_whole_line():
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    panel = res.stdout.split("Commands")[1].splitlines()[1:-1]
    continued = [line for line in panel if line.startswith("│ ") and not line[2].strip()]
    assert not continued, "a command's summary breaks over lines at 120 columns:\n" + "\n".join(panel)


@pytest.mark.parametrize("width", WIDTHS)
def test_export_progress_keeps_a_long_stages_step_and_its_time(width):
    from swiftformer_qnn.cli.render import ExportProgress
    from swiftformer_qnn.pipeline import STAGE_TITLES, StageEvent

    console = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)
    longest = max(STAGE_TITLES, key=lambda k: len(STAGE_TITLES[k]))
    progress = ExportProgress(console)
    for stage in (longest, "mixed_search", "verify"):
        progress.on_event(StageEvent(stage, STAGE_TITLES[stage], "start"))
    progress.on_event(StageEvent(longest, STAGE_TITLES[longest], "step", detail="uniform w8a16"))  # the widest
    progress.on_event(StageEvent("mixed_search", STAGE_TITLES["mixed_search"], "step", detail="mix 12"))
    progress.on_event(StageEvent("verify", STAGE_TITLES["verify"], "done"))
    shown = render(progress.progress.make_tasks_table(progress.progress.tasks), width)  # what the live display draws
    assert_readable(shown, width, [STAGE_TITLES[longest], "uniform w8a16", "mix 12", STAGE_TITLES["verify"]])
    assert all(re.search(r"\d:\d\d:\d\d$", line) for line in shown.splitlines()), shown  # every row's time
