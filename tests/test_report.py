"""`swiftformer-qnn report`: typed report data on profiles with known numbers, the files and
charts it writes, the terminal table, `--compare`, and bad input."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from qdq_fixtures import input_name, make_qdq_model
from report_synthetic import make_profile, model_shaped_profile
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.core.errors import ProfileError
from swiftformer_qnn.htp.session import HtpTarget
from swiftformer_qnn.measure.schema import LatencySource, ModelInfo, Profile
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.profiling.emulator import profile_on_emulator
from swiftformer_qnn.report import LoadedProfile, build_report, compare_profiles
from swiftformer_qnn.report.model import Report, Unit
from swiftformer_qnn.report.tables import breakdown_table, headline_table

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "profiles" / "reference"
runner = CliRunner()
S24 = {
    "device": "Samsung Galaxy S24",
    "chipset": "qualcomm-snapdragon-8gen3",
    "soc_model": 57,
    "htp_arch": 75,
}


def lp(label: str, profile: Profile) -> LoadedProfile:
    return LoadedProfile(label=label, profile=profile)


def save(directory: Path, name: str, profile: Profile) -> Path:
    return profile.save(directory / f"{name}.profile.json")


def md_row(spec, first: str) -> list[str]:
    return next(r for r in spec.rows if r[0] == first)


def invoke(*args: str):
    return runner.invoke(app, ["report", *args])


# ---------------------------------------------------------------------------- typed report, known numbers


def test_headline_cells_are_medians_with_run_counts():
    report = build_report(
        [
            lp("a", make_profile("l1", "2.16", median_ms=2.0, run_count=100)),
            # Three profiles in one cell: the median of their medians, runs summed.
            lp("b1", make_profile("l1", "2.17", median_ms=1.5, run_count=50)),
            lp("b2", make_profile("l1", "2.17", median_ms=2.9, run_count=50)),
            lp("b3", make_profile("l1", "2.17", median_ms=1.7, run_count=20)),
            lp("c", make_profile("encoder", "2.16", median_ms=1.0, run_count=10)),
        ],
        name="t",
    )
    assert [m.id for m in report.models] == ["l1-1x3x224x224", "encoder-1x96x64x64"]
    assert [c.qnn_version for c in report.columns] == ["2.16", "2.17"]
    c16, c17 = report.columns
    cell = report.cell("l1-1x3x224x224", c17.id)
    assert (cell.value, cell.run_count, cell.profile_count, cell.unit) == (1.7, 120, 3, Unit.MS)
    assert report.cell("encoder-1x96x64x64", c17.id) is None

    spec = headline_table(report)
    assert spec.headers[1] == ("QNN 2.16", "aihub", "Samsung Galaxy S23 Ultra", "w8a8")
    assert md_row(spec, "SwiftFormer-L1 1x3x224x224") == [
        "SwiftFormer-L1 1x3x224x224",
        "2.00 ms (100 runs)",
        "1.70 ms (3 profiles, 120 runs)",
    ]
    assert md_row(spec, "SwiftFormerEncoder block 1x96x64x64")[1:] == ["1.00 ms (10 runs)", "–"]
    assert md_row(spec, "encoder block ÷ L1")[1:] == ["50.0%", "–"]


def test_columns_never_mix_sources_devices_or_precisions():
    q = "2.51.0"
    report = build_report(
        [
            lp("aihub", make_profile("l1", q, median_ms=2.0)),
            lp("s24", make_profile("l1", q, median_ms=1.5, device=S24)),
            lp("fp16", make_profile("l1", q, median_ms=3.0, precision="fp16")),
            lp("pub", make_profile("l1", q, median_ms=2.5, source=LatencySource.PUBLISHED)),
            lp(
                "emu",
                make_profile("l1", q, median_ms=None, source=LatencySource.EMULATOR, blocks={"stem": 5e6}),
            ),
        ],
        name="t",
    )
    assert len(report.columns) == 5
    assert all(c.qnn_version == q for c in report.columns)
    # Published first (a new measurement lands to its right), the emulator last.
    assert report.columns[0].setting.source is LatencySource.PUBLISHED
    emu = report.columns[-1]
    assert emu.setting.source is LatencySource.EMULATOR and emu.unit is Unit.CYCLES
    assert sorted(c.column_id for c in report.headline) == sorted(
        c.id for c in report.columns
    )  # one cell each

    row = md_row(headline_table(report), "SwiftFormer-L1 1x3x224x224")
    assert row[1] == "2.50 ms (published)"
    assert row[-1] == "5.00 M cycles (emulator)"  # summed op cycles, never ms
    assert "emulator (not device latency)" in headline_table(report).headers[-1]


def test_versions_sort_numerically():
    profiles = [lp(v, make_profile("l1", v, median_ms=1.0)) for v in ("2.51.0", "2.9", "2.17", "2.100")]
    # A profile that names only its QAIRT version (same numbering) lands in that version's column.
    qairt_only = make_profile("l1", None, median_ms=1.0)
    qairt_only = qairt_only.model_copy(
        update={"toolchain": qairt_only.toolchain.model_copy(update={"qairt_version": "2.17"})}
    )
    report = build_report([*profiles, lp("qairt", qairt_only)], name="t")
    assert [c.qnn_version for c in report.columns] == ["2.9", "2.17", "2.51.0", "2.100"]
    assert report.cell("l1-1x3x224x224", report.columns[1].id).profile_count == 2


def test_block_breakdown_times_and_shares():
    kinds = {"stem": "stem", "stage0.block0": "conv_encoder"}
    report = build_report(
        [
            lp(
                "a",
                make_profile(
                    "l1", "2.17", blocks={"stem": 100, "stage0.block0": 300, "head": 100}, kinds=kinds
                ),
            ),
            # Two profiles in a cell: per-block medians (stem 100/300 -> 200), shares of their sum.
            lp("b1", make_profile("l1", "2.18", blocks={"stem": 100, "stage0.block0": 200}, kinds=kinds)),
            lp("b2", make_profile("l1", "2.18", blocks={"stem": 300, "stage0.block0": 200}, kinds=kinds)),
        ],
        name="t",
    )
    c17, c18 = report.columns
    a = report.breakdown("l1-1x3x224x224", c17.id)
    assert [(b.block, b.time, b.share) for b in a.blocks] == [
        ("stem", 0.1, 0.2),
        ("stage0.block0", 0.3, 0.6),
        ("head", 0.1, 0.2),
    ]
    assert a.unit is Unit.MS and a.total == pytest.approx(0.5)
    b = report.breakdown("l1-1x3x224x224", c18.id)
    assert [(x.block, x.time, x.share) for x in b.blocks] == [("stem", 0.2, 0.5), ("stage0.block0", 0.2, 0.5)]
    assert b.profile_count == 2
    assert b.kinds == {"stem": 0.2, "conv_encoder": 0.2}

    spec = breakdown_table(report, "l1-1x3x224x224")
    assert md_row(spec, "stage0.block0") == [
        "stage0.block0",
        "conv_encoder",
        "0.30 ms · 60.0%",
        "0.20 ms · 50.0%",
    ]
    assert md_row(spec, "head")[2:] == ["0.10 ms · 20.0%", "–"]
    assert md_row(spec, "total (sum of ops)")[2:] == ["0.50 ms", "0.40 ms"]


def test_movers_rank_blocks_by_impact_between_consecutive_versions():
    report = build_report(
        [
            lp("v1", make_profile("l1", "2.17", median_ms=0.7, blocks={"a": 100, "b": 200, "c": 300})),
            lp("v2", make_profile("l1", "2.18", median_ms=0.6, blocks={"a": 150, "b": 100, "c": 290})),
            lp(
                "v3",
                make_profile("l1", "2.19", median_ms=0.6, blocks={"a": 150, "b": 100, "c": 290, "d": 400}),
            ),
        ],
        name="t",
    )
    first, second = report.steps
    assert (first.before, first.after) == (0.7, 0.6) and first.delta == pytest.approx(-0.1)
    assert first.ranked_by == "time"
    assert [m.block for m in first.movers] == ["b", "a", "c"]
    b = first.movers[0]
    assert (b.before, b.after, b.delta, b.ratio) == (0.2, 0.1, -0.1, 0.5)
    # A block that appears is a mover from 0 (no ratio).
    assert second.movers[0].block == "d" and second.movers[0].ratio is None


def test_emulator_movers_rank_by_share_and_stay_in_cycles():
    emu = LatencySource.EMULATOR
    report = build_report(
        [
            lp("e1", make_profile("l1", "2.50", source=emu, median_ms=None, blocks={"a": 1000, "b": 9000})),
            # b grows most in cycles, a most in share: cycles across runs are not comparable.
            lp("e2", make_profile("l1", "2.51", source=emu, median_ms=None, blocks={"a": 3000, "b": 12000})),
        ],
        name="t",
    )
    (step,) = report.steps
    assert step.unit is Unit.CYCLES and step.ranked_by == "share"
    assert [m.block for m in step.movers] == ["a", "b"]
    assert report.cell("l1-1x3x224x224", report.columns[1].id).value == 15000


def test_standalone_block_movers_are_its_parts():
    parts1 = {"encoder": {"local_representation": 300, "attention": 900, "mlp": 400}}
    parts2 = {"encoder": {"local_representation": 310, "attention": 500, "mlp": 450}}
    report = build_report(
        [
            lp("a", make_profile("encoder", "2.17", parts=parts1)),
            lp("b", make_profile("encoder", "2.18", parts=parts2)),
        ],
        name="t",
    )
    (step,) = report.steps
    assert [m.block for m in step.movers] == [
        "encoder/attention",
        "encoder/mlp",
        "encoder/local_representation",
    ]
    assert step.movers[0].delta == pytest.approx(-0.4)


def test_encoder_note_counts_tokens_against_l1s_own_block():
    report = build_report(
        [lp("a", make_profile("l1", "2.17")), lp("b", make_profile("encoder", "2.17"))], name="t"
    )
    assert any("4096 tokens" in n and "28x28, 784 tokens" in n and "5.2x" in n for n in report.notes)


def test_compare_sorts_block_deltas_by_impact():
    a = make_profile("l1", "2.17", median_ms=1.0, blocks={"stem": 100, "head": 500, "x": 50})
    b = make_profile("l1", "2.51.0", median_ms=0.8, blocks={"stem": 300, "head": 200, "x": 55})
    cmp = compare_profiles(lp("A", a), lp("B", b))
    assert (cmp.a_value, cmp.b_value, cmp.ratio) == (1.0, 0.8, 0.8)
    assert cmp.delta == pytest.approx(-0.2)
    assert [(d.block, d.delta, d.ratio) for d in cmp.blocks] == [
        ("head", pytest.approx(-0.3), pytest.approx(0.4)),
        ("stem", pytest.approx(0.2), pytest.approx(3.0)),
        ("x", pytest.approx(0.005), pytest.approx(1.1)),
    ]


def test_compare_refuses_different_models_and_cycles_against_ms():
    with pytest.raises(ProfileError, match="same model.*A is SwiftFormer-L1.*B is SwiftFormerEncoder"):
        compare_profiles(lp("A", make_profile("l1")), lp("B", make_profile("encoder")))
    emu = make_profile("l1", source=LatencySource.EMULATOR, median_ms=None, blocks={"stem": 1.0})
    with pytest.raises(ProfileError, match="emulator cycles against device latency"):
        compare_profiles(lp("A", make_profile("l1")), lp("B", emu))


# ---------------------------------------------------------------------------- the CLI and its files


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A working directory of its own: default reports go to ./build/reports/."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _chart_ok(path: Path) -> None:
    img = imread(path)
    h, w = img.shape[:2]
    assert w >= 600 and h >= 400, f"{path.name} is {w}x{h}"
    rgb = img[..., :3]
    assert float(rgb.std()) > 0.05, f"{path.name} looks blank"
    non_white = float((rgb < 0.95).any(axis=-1).mean())
    assert non_white > 0.05, f"{path.name}: only {non_white:.1%} of pixels are drawn"


def test_reference_report_through_the_cli(workdir):
    res = invoke(str(REFERENCE))
    assert res.exit_code == 0, res.output
    out = workdir / "build" / "reports" / "reference"
    assert sorted(p.name for p in out.iterdir()) == [
        "models_by_version.png",
        "report.html",
        "report.json",
        "report.md",
    ]
    md = (out / "report.md").read_text()
    assert (
        "| SwiftFormer-L1 1x3x224x224 | 2.63 ms (published) | 2.26 ms (published) | 2.43 ms (published) |"
        in md
    )
    assert (
        "| SwiftFormerEncoder block 1x96x64x64 | 2.17 ms (published) | 1.69 ms (published) | 1.70 ms (published) |"
        in md
    )
    assert "| encoder block ÷ L1 | 82.5% | 74.8% | 70.0% |" in md
    assert "QNN 2.16<br>published<br>Samsung Galaxy S23 Ultra<br>w8a8" in md
    assert "No profile here has per-op data" in md
    assert "| 2.16 → 2.17 | 2.63 ms | 2.26 ms | −0.37 ms | 0.86× |" in md
    assert "Amshaker/SwiftFormer README" in md
    report = Report.model_validate_json((out / "report.json").read_text())
    assert sorted(round(c.value, 2) for c in report.headline) == [1.69, 1.7, 2.17, 2.26, 2.43, 2.63]
    # The terminal shows the same cells.
    for text in ("2.63 ms", "2.26 ms", "2.43 ms", "2.17 ms", "1.69 ms", "1.70 ms", "82.5%", "74.8%", "70.0%"):
        assert text in res.stdout
    _chart_ok(out / "models_by_version.png")
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_report_with_per_op_profiles_writes_every_chart(workdir):
    d = workdir / "in"
    for i, q in enumerate(("2.45.0", "2.48.0")):
        save(d, f"l1_{q}", model_shaped_profile("l1", q, seed=i, scale=1 - 0.1 * i))
        save(d, f"enc_{q}", model_shaped_profile("encoder", q, seed=9 + i))
    res = invoke(str(REFERENCE), str(d), "--name", "mine")
    assert res.exit_code == 0, res.output
    out = workdir / "build" / "reports" / "mine"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "blocks_encoder-1x96x64x64.png",
        "blocks_l1-1x3x224x224.png",
        "models_by_version.png",
        "waterfall_encoder-1x96x64x64.png",
        "waterfall_l1-1x3x224x224.png",
    ]
    for png in pngs:
        _chart_ok(out / png)
    md = (out / "report.md").read_text()
    for png in pngs:
        assert f"]({png})" in md
    report = Report.model_validate_json((out / "report.json").read_text())
    # The user's measurements sit next to the published ones, in columns of their own.
    assert [(c.setting.source.value, c.qnn_version) for c in report.columns] == [
        ("published", "2.16"),
        ("published", "2.17"),
        ("published", "2.18"),
        ("aihub", "2.45.0"),
        ("aihub", "2.48.0"),
    ]
    headline_md = md.split("## Headline")[1].split("Notes:")[0]
    for cell in report.headline:
        value = f"{cell.value:.2f} ms"
        assert value in headline_md and value in res.stdout


def _emulator_report_checks(res, out: Path, model_id: str) -> None:
    assert res.exit_code == 0, res.output
    report = Report.model_validate_json((out / "report.json").read_text())
    (col,) = [c for c in report.columns if c.setting.source is LatencySource.EMULATOR]
    assert col.unit is Unit.CYCLES
    cell = report.cell(model_id, col.id)
    assert cell.unit is Unit.CYCLES and cell.run_count is None
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {report.model(model_id).label} |"))
    assert "cycles (emulator)" in row and " ms" not in row
    assert "emulator (not device latency)" in md
    bd = report.breakdown(model_id, col.id)
    assert bd.unit is Unit.CYCLES and sum(b.share for b in bd.blocks) == pytest.approx(1.0)
    for png in out.glob("*.png"):
        _chart_ok(png)
    assert (out / f"waterfall_{model_id}.png").exists()


def test_report_on_a_constructed_emulator_profile(workdir):
    path = save(
        workdir, "emu", model_shaped_profile("encoder", "2.51.0", source=LatencySource.EMULATOR, seed=3)
    )
    res = invoke(str(path), "--out", "rep")
    _emulator_report_checks(res, workdir / "rep", "encoder-1x96x64x64")


def test_report_on_a_real_emulator_profile(workdir):
    """A profile from onnxruntime-qnn's HTP emulator (the emulator backend), reported as cycles."""
    variant = get_variant("encoder")
    shape = variant.input_shape(16)
    model = make_qdq_model("encoder", 16, workdir / "qdq")
    feeds = {input_name("encoder"): np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    info = ModelInfo(variant="encoder", input_shape=list(shape), precision="w8a8", weights="realistic-random")
    profile = profile_on_emulator(model, feeds, variant, info, HtpTarget(), workdir / "emu")
    path = save(workdir / "emu", "encoder16", profile)
    res = invoke(str(path), str(REFERENCE), "--out", "rep")
    _emulator_report_checks(res, workdir / "rep", "encoder-1x96x16x16")


def test_compare_through_the_cli(workdir):
    a = save(workdir, "a", make_profile("l1", "2.17", median_ms=1.0, blocks={"stem": 100, "head": 500}))
    b = save(workdir, "b", make_profile("l1", "2.51.0", median_ms=0.8, blocks={"stem": 300, "head": 200}))
    res = invoke("--compare", str(a), str(b))
    assert res.exit_code == 0, res.output
    assert "−0.20 ms" in res.stdout and "(0.80×)" in res.stdout
    out = workdir / "build" / "reports" / "compare-a-vs-b"
    md = (out / "compare.md").read_text()
    assert md.index("| head |") < md.index("| stem |")
    assert "| head | – | 0.50 ms | 0.20 ms | −0.30 ms | 0.40× | 83.3% → 40.0% |" in md
    assert json.loads((out / "compare.json").read_text())["kind"] == "swiftformer-qnn.comparison"


def _one_line_error(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0]
    assert res.stdout == ""


def _nothing_written(workdir: Path) -> None:
    reports = workdir / "build" / "reports"
    left = sorted(p.name for p in reports.iterdir()) if reports.exists() else []
    assert left == [], f"left behind: {left}"


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "not a JSON profile"),
        (json.dumps({"hello": "world"}), 'not a swiftformer-qnn profile (no "kind"'),
        (json.dumps({"kind": "swiftformer-qnn.profile", "schema_version": 99}), "schema_version 99"),
        (
            json.dumps({"kind": "swiftformer-qnn.profile", "schema_version": 2, "source": "aihub"}),
            "invalid profile at",
        ),
    ],
)
def test_malformed_or_foreign_json_is_one_line_naming_the_file(workdir, content, needle):
    bad = workdir / "in" / "bad.profile.json"
    bad.parent.mkdir()
    bad.write_text(content)
    res = invoke(str(REFERENCE), str(bad))
    _one_line_error(res, "in/bad.profile.json", needle, "--skip-invalid")
    _nothing_written(workdir)


def test_skip_invalid_reports_on_the_rest_and_lists_what_it_skipped(workdir):
    bad = workdir / "bad.profile.json"
    bad.write_text("[1, 2]")
    res = invoke(str(REFERENCE), str(bad), "--skip-invalid", "--name", "r")
    assert res.exit_code == 0, res.output
    assert "skipped:" in res.stderr and "bad.profile.json" in res.stderr
    md = (workdir / "build" / "reports" / "r" / "report.md").read_text()
    assert "Skipped (invalid):" in md and "`bad.profile.json`" in md
    assert "2.63 ms (published)" in md


def test_only_invalid_files_even_with_skip_invalid_is_an_error(workdir):
    bad = workdir / "bad.profile.json"
    bad.write_text("{")
    _one_line_error(invoke(str(bad), "--skip-invalid"), "None of the 1 file(s) given is a valid profile.")
    _nothing_written(workdir)


def test_empty_directory_and_missing_paths(workdir):
    (workdir / "empty").mkdir()
    _one_line_error(invoke("empty"), "empty: no *.profile.json files in this directory.")
    _one_line_error(invoke(str(workdir / "nope.profile.json")), "nope.profile.json: no such profile file.")
    _one_line_error(invoke(), "No profile given.")
    _nothing_written(workdir)


def test_compare_bad_input(workdir):
    l1 = save(workdir, "l1", make_profile("l1"))
    enc = save(workdir, "enc", make_profile("encoder"))
    _one_line_error(invoke("--compare", str(l1), str(enc)), "--compare needs two profiles of the same model")
    _one_line_error(invoke(str(l1), "--compare", str(l1), str(l1)), "--compare takes exactly two profiles")
    _nothing_written(workdir)


def test_out_dir_that_is_not_a_report_is_never_replaced(workdir):
    precious = workdir / "data"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    _one_line_error(invoke(str(REFERENCE), "--out", "data"), "data exists and is not a report directory")
    assert (precious / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in workdir.iterdir()) == ["data"]  # no temporary sibling left


def test_rerun_replaces_an_earlier_report_whole(workdir):
    assert invoke(str(REFERENCE), "--out", "rep").exit_code == 0
    (workdir / "rep" / "stale.png").write_bytes(b"old")
    assert invoke(str(REFERENCE), "--out", "rep").exit_code == 0
    assert not (workdir / "rep" / "stale.png").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["rep"]


def test_a_failure_while_writing_leaves_nothing_half_written(workdir, monkeypatch):
    from swiftformer_qnn.report import build

    def broken(report, out_dir):
        (Path(out_dir) / "half.png").write_bytes(b"x")
        raise ProfileError("chart rendering failed")

    monkeypatch.setattr(build, "render_charts", broken)
    _one_line_error(invoke(str(REFERENCE), "--out", "rep"), "chart rendering failed")
    assert sorted(os.listdir(workdir)) == []


def test_default_names():
    from swiftformer_qnn.report.build import default_name

    assert default_name([REFERENCE]) == "reference"
    assert default_name([Path("a/x.profile.json"), Path("b/y.profile.json")]) == "x+y"
    long = default_name([Path(f"{'n' * 30}{i}.profile.json") for i in range(3)])
    assert len(long) <= 60 and re.fullmatch(r"[n0-9+]+-[0-9a-f]{8}", long)
