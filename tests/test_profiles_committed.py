"""Every profile committed under profiles/ validates against the schema, and the reference
rows hold the published numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftformer_qnn.core.errors import ProfileError
from swiftformer_qnn.measure.schema import LatencySource, load_profile

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"

# Upstream README "SwiftFormer meets Android" (Samsung Galaxy S23 Ultra), ms.
PUBLISHED_MS = {
    ("l1", "2.16"): 2.63,
    ("l1", "2.17"): 2.26,
    ("l1", "2.18"): 2.43,
    ("encoder", "2.16"): 2.17,
    ("encoder", "2.17"): 1.69,
    ("encoder", "2.18"): 1.70,
}


def invalid_profiles(root: Path) -> dict[str, str]:
    """{path: why} for every `*.profile.json` below `root` that does not load."""
    bad = {}
    for path in sorted(root.glob("**/*.profile.json")):
        try:
            load_profile(path)
        except ProfileError as exc:
            bad[str(path.relative_to(root))] = exc.message
    return bad


def test_every_committed_profile_validates():
    found = sorted(PROFILES.glob("**/*.profile.json"))
    assert len(found) >= len(PUBLISHED_MS), f"expected the reference profiles under {PROFILES}, found {found}"
    assert invalid_profiles(PROFILES) == {}


def test_the_check_catches_a_bad_profile(tmp_path):
    """The validation above can fail: a reference profile with one wrong field is reported."""
    good = json.loads((PROFILES / "reference" / "s23-ultra_l1_qnn2.17.profile.json").read_text())
    (tmp_path / "ok.profile.json").write_text(json.dumps(good))
    emulator_with_latency = dict(good, source="emulator")  # emulator profiles cannot claim latency
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.profile.json").write_text(json.dumps(emulator_with_latency))
    (tmp_path / "broken.profile.json").write_text("{")
    bad = invalid_profiles(tmp_path)
    assert set(bad) == {"sub/bad.profile.json", "broken.profile.json"}
    assert "not device latency" in bad["sub/bad.profile.json"]


def unmarked_runs(root: Path) -> dict[str, str]:
    """{run folder: why} for every raw run folder (`<profile stem>.raw/`) below `root` that does
    not say it is the HTP emulator's: QNN's CSV reads the same whether a phone or the x86
    emulator wrote it, so its `made_by.json` is what keeps an import from taking its cycles for a
    phone's latency."""
    from swiftformer_qnn.htp.session import PROFILE_CSV
    from swiftformer_qnn.profiling.emulator import made_by_emulator
    from swiftformer_qnn.profiling.raw import MADE_BY

    bad = {}
    for raw in sorted(p for p in root.glob("**/*.raw") if p.is_dir()):
        beside = raw.with_name(raw.name.removesuffix(".raw") + ".profile.json")
        if not made_by_emulator(raw / PROFILE_CSV):
            bad[str(raw.relative_to(root))] = f"no {MADE_BY} of the emulator"
        elif not beside.is_file() or load_profile(beside).source is not LatencySource.EMULATOR:
            bad[str(raw.relative_to(root))] = f"its marker says the emulator, but {beside.name} is not an emulator profile"
    return bad


def test_every_committed_run_folder_says_what_made_it():
    runs = [p for p in PROFILES.glob("**/*.raw") if p.is_dir()]
    assert len(runs) >= 2, f"expected the emulator runs of L1 and the block under {PROFILES}, found {runs}"
    assert unmarked_runs(PROFILES) == {}


def test_the_run_folder_check_catches_a_missing_or_untrue_marker(tmp_path):
    """The check above can fail: a run folder without its marker, and a marker beside a profile
    that is not the emulator's, are both reported."""
    import shutil

    (run,) = sorted((PROFILES / "emulator").glob("encoder-*.raw"))
    profile = run.with_name(run.name.removesuffix(".raw") + ".profile.json")
    for name in ("kept", "unmarked", "untrue"):
        shutil.copytree(run, tmp_path / name / run.name)
        shutil.copyfile(profile, tmp_path / name / profile.name)
    (tmp_path / "unmarked" / run.name / "made_by.json").unlink()
    published = PROFILES / "reference" / "s23-ultra_encoder_qnn2.17.profile.json"
    shutil.copyfile(published, tmp_path / "untrue" / profile.name)
    bad = unmarked_runs(tmp_path)
    assert set(bad) == {f"unmarked/{run.name}", f"untrue/{run.name}"}
    assert "no made_by.json" in bad[f"unmarked/{run.name}"] and "not an emulator profile" in bad[f"untrue/{run.name}"]


def test_reference_profiles_hold_the_published_table():
    refs = [load_profile(p) for p in sorted((PROFILES / "reference").glob("*.profile.json"))]
    got = {(p.model.variant, p.toolchain.qnn_version): p.latency.median_us / 1000 for p in refs}
    assert got == pytest.approx(PUBLISHED_MS)
    for p in refs:
        assert p.source is LatencySource.PUBLISHED
        assert p.ops == []  # summary only
        assert (p.target.device, p.target.chipset, p.target.htp_arch) == (
            "Samsung Galaxy S23 Ultra",
            "qualcomm-snapdragon-8gen2",
            73,
        )
        assert p.model.opset == 11 and p.model.weights == "random" and p.model.precision == "w8a8"
        assert p.model.input_shape == ([1, 3, 224, 224] if p.model.variant == "l1" else [1, 96, 64, 64])
        assert (
            "Amshaker/SwiftFormer" in p.provenance.citation
            and "escorciav/SwiftFormer" in p.provenance.citation
        )
        assert "published table" in p.provenance.note and "uncertain" in p.provenance.note


def test_the_committed_structural_baseline_is_what_ci_gates_against():
    """docs/examples/swiftformer-latency-gate.yml gates `export --qnn` output against this directory."""
    from swiftformer_qnn.core.atomic import sha256_file
    from swiftformer_qnn.gate.baseline import read_record
    from swiftformer_qnn.htp.record import read_compile_record
    from swiftformer_qnn.pipeline.artifacts import read_compile_side

    directory = PROFILES / "baselines" / "compile-l1-w8a8-sm8550-qnn2-51-0"
    record = read_record(directory)
    assert record is not None and record.mode == "structure" and record.key == directory.name
    assert {name: sha256_file(directory / name) for name in record.files} == record.files  # untouched
    side = read_compile_side([directory], side="baseline")
    assert side.failures == [] and len(side.compiles) == 1
    c = side.compiles[0].record
    assert (c.model.variant, c.model.precision, c.soc, c.model.input_shape, c.qnn_version) == (
        "l1", "w8a8", "sm8550", [1, 3, 224, 224], "2.51.0")
    assert (record.variant, record.precision, record.device, record.qnn_version) == ("l1", "w8a8", "sm8550", "2.51.0")
    assert c.cpu_fallback_disabled and c.op_trace == "qnn_op_trace.json"
    assert sum(c.htp_op_types.values()) == c.htp_op_count
    # The default export's graph meets issue 15's targets: at most 195 HTP ops, BatchNorms
    # folded away, no float islands, no layout op but the input's.
    assert c.htp_op_count <= 195 and "Batchnorm" not in c.htp_op_types and c.graph_cost.float_islands == 0
    assert c.graph_cost.layout_ops == c.graph_cost.boundary_layout_ops == 1
    assert c == read_compile_record(directory / "compile.json")


def test_every_committed_compile_record_loads():
    from swiftformer_qnn.htp.record import read_compile_record

    found = sorted(PROFILES.glob("**/compile.json"))
    assert found, f"expected the structural baseline's compile.json under {PROFILES}"
    for path in found:
        read_compile_record(path)  # raises ProfileError naming the file and field


GRAPH_TABLE_MODELS = {"SwiftFormer-L1, 224": "l1", "SwiftFormer-XS, 224": "xs", "encoder block 1x96x64x64": "encoder"}


def graph_table_rows(readme: str) -> dict[tuple[str, str], list[str]]:
    """{(variant, graph): cells} of docs/graph.md's compiled-graph table (a blank model cell repeats the row above)."""
    rows, model = {}, None
    start = readme.index("| model | graph | HTP ops | layout ops |")
    for line in readme[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        model = GRAPH_TABLE_MODELS[cells[0]] if cells[0] else model
        rows[(model, cells[1])] = cells[2:]
    return rows


def test_the_docs_graph_table_is_the_committed_measurement():
    # docs/graph.md quotes profiles/reports/htp-graph/after.json (tests/bench/htp_graph_tables.py) by
    # hand; a re-measurement that changes a figure must change the page too.
    after = json.loads((PROFILES / "reports" / "htp-graph" / "after.json").read_text())
    rows = graph_table_rows((ROOT / "docs" / "graph.md").read_text())
    measured = {(r["variant"], r["graph"]): r for r in after["rows"]}
    assert set(rows) == set(measured)
    for key, (ops, layout, islands, bn, binary, sqnr, *_estimated) in rows.items():  # estimated: the estimate stage
        c = measured[key]["compiles"]["2.51.0"]
        assert int(ops) == c["htp_ops"], key
        assert int(layout.split()[0].rstrip(",")) == c["layout_ops"], key
        assert int(islands) == c["float_islands"], key
        assert int(bn) == c["op_types"].get("Batchnorm", 0), key
        mb = float(binary.removesuffix(" MB"))
        assert abs(mb - c["context_binary_bytes"] / 1e6) <= 0.05 + 1e-9, key
        assert float(sqnr.removesuffix(" dB")) == round(measured[key]["htp_vs_fp32_sqnr_db"], 1), key


def test_the_estimate_validation_doc_quotes_the_committed_report():
    # docs/estimate-validation.md quotes the table and spread that tests/bench/estimate_validation.py
    # wrote to profiles/reports/estimate-validation/ by copy; a re-run that changes a figure must
    # change the doc too.
    report = (PROFILES / "reports" / "estimate-validation" / "estimate-validation.md").read_text()
    doc = (ROOT / "docs" / "estimate-validation.md").read_text()
    quoted = [line for line in report.splitlines() if line.startswith(("| ", "- "))]
    assert len(quoted) > 10
    assert [line for line in quoted if line not in doc] == []
    measured = json.loads((PROFILES / "reports" / "estimate-validation" / "estimate-validation.json").read_text())
    spread = measured["summary"]["ratio_all"]
    assert f"median {spread['median']}, min {spread['min']}, max {spread['max']}" in doc


# ---------------------------------------------------------------------------- the emulator profiles

EMULATOR = PROFILES / "emulator"


def documented_emulator_commands() -> list[list[str]]:
    """The commands profiles/emulator/README.md says made the committed emulator profiles, in order."""
    commands = [line.split()[1:] for line in (EMULATOR / "README.md").read_text().splitlines()
                if line.strip().startswith("swiftformer-qnn ")]
    assert any(c[0] == "profile" for c in commands), "profiles/emulator/README.md names no `swiftformer-qnn profile`"
    return commands


def emulator_profiles(root: Path) -> dict[str, tuple[str, int, list[int]]]:
    """{variant: (graph form, op count, input shape)} of the emulator profiles below `root`."""
    out = {}
    for path in sorted(root.glob("*.profile.json")):
        p = load_profile(path)
        assert p.source is LatencySource.EMULATOR, path
        out[p.model.variant] = (p.model.graph, len(p.ops), p.model.input_shape)
    return out


def test_the_committed_emulator_profiles_are_the_default_export():
    """They show what `export` builds today: the default graph form and the default (realistic)
    random weights. (Their op counts: the slow test below runs the documented command again.)"""
    from swiftformer_qnn.pipeline.orchestrator import RANDOM_WEIGHTS_ID
    from swiftformer_qnn.pipeline.requests import ExportRequest

    committed = {p.model.variant: p for p in map(load_profile, sorted(EMULATOR.glob("*.profile.json")))}
    assert set(committed) == {"l1", "encoder"}
    assert {p.model.graph for p in committed.values()} == {ExportRequest().graph}
    assert {p.model.weights for p in committed.values()} == {RANDOM_WEIGHTS_ID}


@pytest.mark.slow
def test_the_documented_command_makes_the_committed_emulator_profiles(tmp_path, monkeypatch):
    """Run the commands profiles/emulator/README.md documents (into a temporary folder): same models,
    graph forms, input shapes and op counts as the committed files."""
    from typer.testing import CliRunner

    from swiftformer_qnn.cli import app

    monkeypatch.chdir(tmp_path)
    for args in documented_emulator_commands():
        if "--out" in args:
            assert args[args.index("--out") + 1] == "profiles/emulator"
            args[args.index("--out") + 1] = str(tmp_path / "emulator")
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    assert emulator_profiles(tmp_path / "emulator") == emulator_profiles(EMULATOR)



def test_the_calibration_methods_doc_quotes_the_committed_comparison_and_its_default():
    # docs/export.md quotes the table tests/bench/calibration_methods.py wrote to
    # profiles/reports/calibration-methods/; the default method is the one that comparison decided.
    from swiftformer_qnn.pipeline import ExportRequest

    folder = PROFILES / "reports" / "calibration-methods"
    doc = (ROOT / "docs" / "export.md").read_text()
    for report in sorted(folder.glob("calibration-methods-*.md")):
        quoted = [line for line in report.read_text().splitlines() if line.startswith("| ")]
        assert len(quoted) > 4, report
        assert [line for line in quoted if line not in doc] == [], report
    measured = json.loads((folder / "calibration-methods-w8a8.json").read_text())
    assert {r["model"] for r in measured["rows"]} == {"xs", "l1", "encoder"}
    assert set(measured["methods"]) == {"minmax", "percentile", "entropy", "mse"}
    assert measured["decision"]["default"] == ExportRequest().calibration_method
