"""The latency gate's pure logic on synthetic profiles: no device, no network."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gate_sim import Scenario, l1_block_times_us, simulate, synthetic_profile

from swiftformer_qnn.cli.gate_outputs import render_junit, render_markdown
from swiftformer_qnn.core.errors import ProfileError, UsageError
from swiftformer_qnn.gate import (
    GateRules,
    GateVerdict,
    MetricStatus,
    Samples,
    compare,
    gate_manifests,
    gate_paths,
    gate_profiles,
    gate_structure,
    load_rules,
    parse_fraction,
    parse_overrides,
    update_baseline,
    with_flags,
)
from swiftformer_qnn.gate.stats import bootstrap, statistic_rows
from swiftformer_qnn.htp.record import (
    CompiledModel,
    CompileFailure,
    CompileRecord,
    GraphCost,
    write_compile_record,
)
from swiftformer_qnn.measure.schema import LatencySource, LatencySummary, Profile
from swiftformer_qnn.pipeline.artifacts import (
    FoundCompile,
    FoundFailure,
    read_compile_side,
    read_compile_structure,
)

REPO = Path(__file__).resolve().parents[1]
BLOCKS = {"stem": 200.0, "stage0.block0": 100.0, "stage2.block9": 300.0, "head": 60.0, "other": 1000.0}


def runs(rng, median_us, n=20, spread=0.03):
    return median_us * rng.lognormal(0.0, spread, n)


def side(rng, n_profiles=1, *, scale=1.0, block_scale=None, drop=(), n_runs=20, **kw) -> list[Profile]:
    """`n_profiles` profiles of the toy model, optionally slower overall or per block."""
    block_scale = block_scale or {}
    out = []
    for _ in range(n_profiles):
        blocks = {b: t * scale * block_scale.get(b, 1.0) * rng.lognormal(0, 0.03)
                  for b, t in BLOCKS.items() if b not in drop}
        total = sum(t * scale * block_scale.get(b, 1.0) for b, t in BLOCKS.items())
        out.append(synthetic_profile(runs(rng, total, n_runs), blocks, **kw))
    return out


def by_metric(verdict: GateVerdict):
    return {r.metric: r for r in verdict.results}


# ---------------------------------------------------------------- rules


def test_repo_pyproject_holds_the_documented_defaults():
    rules, path = load_rules(search_from=REPO / "swiftformer_qnn")
    assert path == REPO / "pyproject.toml"
    assert (rules.relative_threshold, rules.absolute_floor_us, rules.statistic) == (0.05, 20.0, "median")


def test_rules_from_pyproject_with_block_overrides(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.swiftformer-qnn.gate]\nrelative_threshold = 0.08\nstatistic = "mean"\n'
        '[tool.swiftformer-qnn.gate.blocks]\n"stage2.block9" = { relative_threshold = 0.2 }\n'
        '"stage*" = { relative_threshold = 0.1, absolute_floor_us = 5 }\n'
    )
    (tmp_path / "sub").mkdir()
    rules, path = load_rules(search_from=tmp_path / "sub")  # the nearest parent's pyproject
    assert path == tmp_path / "pyproject.toml"
    assert rules.statistic == "mean"
    assert rules.rule_for("stage2.block9") == (0.2, 5.0)  # exact id wins; floor falls back to the pattern
    assert rules.rule_for("stage1.block0") == (0.1, 5.0)
    assert rules.rule_for("head") == (0.08, 20.0)


def test_a_typo_in_the_gate_table_is_an_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.swiftformer-qnn.gate]\nrelative_treshold = 0.1\n")
    with pytest.raises(UsageError, match="relative_treshold"):
        load_rules(tmp_path / "pyproject.toml")


def test_a_pyproject_without_the_gate_table_gives_defaults(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_rules(search_from=tmp_path) == (GateRules(), tmp_path / "pyproject.toml")


def test_flags_override_file_and_win_among_patterns():
    rules = GateRules(blocks={"stage*": {"relative_threshold": 0.1}})
    merged = with_flags(
        rules, relative_threshold=0.03, block_thresholds=parse_overrides(["stage2.*=20%"], "relative_threshold",
                                                                          flag="--block-threshold"),
        block_floors={"stage*": 1.0},
    )
    assert merged.relative_threshold == 0.03
    assert merged.rule_for("stage2.block9") == (0.2, 1.0)
    assert merged.rule_for("stage1.block0") == (0.1, 1.0)


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("0.05", 0.05), ("12.5%", 0.125)])
def test_parse_fraction(text, value):
    assert parse_fraction(text, flag="--threshold") == pytest.approx(value)


@pytest.mark.parametrize("text", ["5", "-1%", "five", "1.5", "inf%", "nan", "nan%"])
def test_parse_fraction_refuses_ambiguous_or_bad_values(text):
    with pytest.raises(UsageError):
        parse_fraction(text, flag="--threshold")


@pytest.mark.parametrize("table", ["absolute_floor_us = inf", "confidence = nan",
                                   'blocks = {head = {absolute_floor_us = nan}}'])
def test_gate_rules_refuse_nan_and_infinity_from_pyproject_too(tmp_path, table):
    """A NaN floor compares false with every change and an infinite one passes all of them: either
    way the gate could not fail (TOML writes both as bare inf and nan)."""
    (tmp_path / "pyproject.toml").write_text(f"[tool.swiftformer-qnn.gate]\n{table}\n")
    with pytest.raises(UsageError, match="finite number"):
        load_rules(search_from=tmp_path)


def test_parse_overrides_refuses_a_missing_pattern():
    with pytest.raises(UsageError, match="PATTERN=NUMBER"):
        parse_overrides(["0.1"], "relative_threshold", flag="--block-threshold")


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_statistic_rows_match_numpy(n):
    x = np.random.default_rng(n).random((7, n))
    np.testing.assert_allclose(statistic_rows(x, "median"), np.median(x, axis=1))
    np.testing.assert_allclose(statistic_rows(x, "mean"), x.mean(axis=1))
    np.testing.assert_allclose(statistic_rows(x, "min"), x.min(axis=1))


def test_bootstrap_first_stage_keeps_session_to_session_spread():
    # Five sessions, each perfectly steady but at its own level: resampling only runs would
    # say the median is known to a fraction of a percent; resampling sessions first does not.
    rng = np.random.default_rng(0)
    levels = [97.0, 99.0, 100.0, 101.0, 103.0]
    sessions = Samples.of([np.full(20, lv) + rng.normal(0, 0.01, 20) for lv in levels])
    pooled = Samples.of([sessions.pooled])
    two_stage = bootstrap(sessions, "median", 2000, np.random.default_rng(1))
    one_stage = bootstrap(pooled, "median", 2000, np.random.default_rng(1))
    assert np.ptp(np.quantile(two_stage, [0.025, 0.975])) > 3 * np.ptp(np.quantile(one_stage, [0.025, 0.975]))


def test_compare_is_deterministic():
    rng = np.random.default_rng(3)
    b, c = Samples.of([runs(rng, 1000)]), Samples.of([runs(rng, 1100)])
    assert compare("model", "model", b, c, GateRules()) == compare("model", "model", b, c, GateRules())


def test_clear_regression_fails_with_its_size_and_interval():
    rng = np.random.default_rng(1)
    r = compare("model", "model", Samples.of([runs(rng, 1000)]), Samples.of([runs(rng, 1200)]), GateRules())
    assert r.status is MetricStatus.REGRESSION and r.fails
    assert r.relative_change == pytest.approx(0.2, abs=0.03)
    assert r.interval.low > 0.1 and r.prob_slower > 0.99
    assert r.method.value == "bootstrap"
    assert "slower" in r.reason and "%" in r.reason


def test_clear_improvement_passes_and_is_reported():
    rng = np.random.default_rng(2)
    r = compare("model", "model", Samples.of([runs(rng, 1000)]), Samples.of([runs(rng, 800)]), GateRules())
    assert r.status is MetricStatus.IMPROVEMENT and not r.fails
    assert r.interval.high < 0


def test_a_significant_change_under_the_threshold_passes():
    rng = np.random.default_rng(4)
    b, c = Samples.of([runs(rng, 1000, 200, 0.005)]), Samples.of([runs(rng, 1030, 200, 0.005)])
    r = compare("model", "model", b, c, GateRules())
    assert r.interval.low > 0  # surely slower ...
    assert r.status is MetricStatus.UNCHANGED  # ... but by 3%, under the 5% threshold


def test_a_change_under_the_absolute_floor_passes():
    rng = np.random.default_rng(5)
    r = compare("head", "block", Samples.of([runs(rng, 50)]), Samples.of([runs(rng, 65)]), GateRules())
    assert r.relative_change > 0.2 and r.change < 20
    assert r.status is MetricStatus.UNCHANGED


def test_a_large_change_inside_the_spread_is_within_noise():
    rng = np.random.default_rng(6)
    noisy = GateRules(absolute_floor_us=0)
    b, c = Samples.of([runs(rng, 1000, 6, 0.3)]), Samples.of([runs(rng, 1080, 6, 0.3)])
    r = compare("model", "model", b, c, noisy)
    assert abs(r.relative_change) > 0.05
    assert r.status is MetricStatus.WITHIN_NOISE and not r.fails
    assert r.interval.low < 0 < r.interval.high


def test_too_few_samples_fall_back_to_thresholds_and_say_so():
    r = compare("stem", "block", Samples.of([[200.0]]), Samples.of([[260.0]]), GateRules())
    assert r.method.value == "threshold-only" and r.interval is None
    assert r.status is MetricStatus.REGRESSION
    assert "no spread known" in r.reason


# ---------------------------------------------------------------- profiles


def test_gate_profiles_clear_regression_names_the_block():
    rng = np.random.default_rng(10)
    v = gate_profiles(side(rng, 5), side(rng, 5, block_scale={"stage0.block0": 1.3}), GateRules())
    assert not v.passed and v.exit_code == 1
    assert [r.metric for r in v.regressions] == ["stage0.block0"]  # +30 us: not a 5% model regression
    assert by_metric(v)["stage0.block0"].method.value == "bootstrap"


def test_gate_profiles_equal_runs_pass():
    rng = np.random.default_rng(11)
    v = gate_profiles(side(rng, 5), side(rng, 5), GateRules())
    assert v.passed and v.exit_code == 0 and not v.regressions
    assert list(by_metric(v)) == ["model", *BLOCKS]


def test_gate_profiles_whole_model_improvement():
    rng = np.random.default_rng(12)
    v = gate_profiles(side(rng, 1), side(rng, 1, scale=0.8), GateRules())
    assert v.passed and "model" in [r.metric for r in v.improvements]


def test_missing_blocks_on_either_side_are_reported():
    rng = np.random.default_rng(13)
    base = side(rng, 2, drop=("head",))
    cand = side(rng, 2, drop=("stage0.block0",))
    v = gate_profiles(base, cand, GateRules())
    m = by_metric(v)
    assert m["stage0.block0"].status is MetricStatus.MISSING_IN_CANDIDATE
    assert m["head"].status is MetricStatus.MISSING_IN_BASELINE
    assert v.passed  # reported, not failed, by default
    strict = gate_profiles(base, cand, GateRules(fail_on_missing=True))
    assert not strict.passed and {r.metric for r in strict.failures} == {"stage0.block0", "head"}


def test_block_threshold_overrides_apply():
    rng = np.random.default_rng(14)
    base, cand = side(rng, 5), side(rng, 5, block_scale={"stage0.block0": 1.3})
    assert not gate_profiles(base, cand, GateRules()).passed
    relaxed = GateRules(blocks={"stage0.block0": {"relative_threshold": 0.5}})
    assert gate_profiles(base, cand, relaxed).passed
    by_pattern = GateRules(blocks={"stage0.*": {"absolute_floor_us": 500}})
    assert gate_profiles(base, cand, by_pattern).passed
    stricter = GateRules(blocks={"model": {"relative_threshold": 0.0, "absolute_floor_us": 0}})
    v = gate_profiles(base, side(rng, 5, scale=1.02), stricter)
    assert by_metric(v)["model"].relative_threshold == 0.0


@pytest.mark.parametrize("field, kw", [
    ("variant", {"variant": "xs"}),
    ("precision", {"precision": "w8a16"}),
    ("device", {"device": "Samsung Galaxy S24 Ultra"}),
    ("source", {"source": LatencySource.QNN_NET_RUN}),
])
def test_profiles_of_different_things_are_refused_unless_allowed(field, kw):
    rng = np.random.default_rng(15)
    base, cand = side(rng, 1), side(rng, 1, **kw)
    with pytest.raises(ProfileError, match=field):
        gate_profiles(base, cand, GateRules())
    v = gate_profiles(base, cand, GateRules(), allow_mismatch=True)
    assert v.mismatches and field in v.mismatches[0]


def test_a_different_qnn_version_is_what_the_gate_is_for():
    rng = np.random.default_rng(16)
    v = gate_profiles(side(rng, 1), side(rng, 1, qnn_version="2.52.0"), GateRules())
    assert v.passed and v.candidate.qnn_versions == ["2.52.0"] and not v.mismatches


def test_mixed_profiles_within_one_side_are_refused():
    rng = np.random.default_rng(17)
    with pytest.raises(ProfileError, match="disagree"):
        gate_profiles(side(rng, 1) + side(rng, 1, qnn_version="2.52.0"), side(rng, 1), GateRules())


def test_the_same_profile_job_twice_on_a_side_is_refused():
    rng = np.random.default_rng(22)
    twice = side(rng, 1, job_id="j1") * 2
    with pytest.raises(ProfileError, match="same profile job j1"):
        gate_profiles(twice, side(rng, 1), GateRules())


def test_emulator_profiles_are_not_gated_as_latency():
    emu = Profile.model_validate({
        **synthetic_profile([1.0]).model_dump(exclude={"latency", "ops", "source"}),
        "source": "emulator",
    })
    with pytest.raises(ProfileError, match="emulator"):
        gate_profiles([emu], [emu], GateRules())


def test_single_sample_per_side_is_gated_on_thresholds_and_noted():
    pub = [p.model_copy(update={"latency": LatencySummary(min_us=1000, median_us=1000, run_count=100), "ops": []})
           for p in side(np.random.default_rng(18), 1, source=LatencySource.PUBLISHED)]
    slower = [pub[0].model_copy(update={"latency": LatencySummary(min_us=1200, median_us=1200, run_count=100)})]
    v = gate_profiles(pub, slower, GateRules())
    r = by_metric(v)["model"]
    assert r.method.value == "threshold-only" and r.status is MetricStatus.REGRESSION
    assert any("no spread is known" in n for n in v.notes)
    assert any("only the whole model" in n for n in v.notes)


def test_gate_paths_reads_directories(tmp_path):
    rng = np.random.default_rng(19)
    for name, profiles in (("base", side(rng, 3)), ("cand", side(rng, 3, scale=1.2))):
        for i, p in enumerate(profiles):
            p.save(tmp_path / name / f"job{i}" / "l1.profile.json")
    v = gate_paths([tmp_path / "base"], [tmp_path / "cand"], GateRules())
    assert v.baseline.profiles == 3 and v.baseline.runs == 60
    assert "model" in [r.metric for r in v.regressions]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProfileError, match="no \\*.profile.json"):
        gate_paths([tmp_path / "empty"], [tmp_path / "cand"], GateRules())


# ---------------------------------------------------------------- simulation (rates quoted in docs/ci.md)

SIM_PAIRS, SIM_SEED = 1000, 0


def test_simulated_noise_rarely_fails_one_profile_per_side():
    r = simulate(Scenario("noise"), pairs=SIM_PAIRS, seed=SIM_SEED)
    assert r.fail_rate < 0.01


def test_simulated_10_percent_slowdown_is_caught_one_profile_per_side():
    r = simulate(Scenario("10% slower", slowdown=0.10), pairs=SIM_PAIRS, seed=SIM_SEED)
    assert r.fail_rate > 0.95 and r.model_regressed / r.pairs > 0.95


# Several profiles per side bootstrap every metric; a smaller layout keeps the default tier
# fast. The full 27-block layout at 1000 pairs runs in the slow tier (and in
# tests/bench/bench_gate.py).
_FEW_BLOCKS = {"stem": 150.0, "stage2.block9": 95.0, "stage3.block4": 95.0, "other": 1160.0}


def test_simulated_noise_rarely_fails_several_profiles_per_side():
    sc = Scenario("noise, 5 profiles", profiles=5, blocks=_FEW_BLOCKS)
    assert simulate(sc, pairs=300, seed=SIM_SEED).fail_rate < 0.01


def test_simulated_block_slowdown_is_caught_in_that_block_only():
    sc = Scenario("one block", profiles=5, blocks=_FEW_BLOCKS, slow_blocks=("stage2.block9",), slowdown=0.3)
    r = simulate(sc, pairs=300, seed=SIM_SEED)
    assert r.slow_blocks_caught / r.pairs > 0.95
    assert r.model_regressed / r.pairs < 0.01  # +28 us on 1.5 ms is not a model regression


def test_simulated_single_run_per_side_is_not_noise_proof():
    # Why the verdict says "no spread known": with one value per side, 3% noise crosses a 5%
    # threshold in about one comparison in eight.
    r = simulate(Scenario("one run", runs=1, blocks={"other": 1500.0}), pairs=SIM_PAIRS, seed=SIM_SEED)
    assert 0.05 < r.fail_rate < 0.25


@pytest.mark.slow
def test_simulated_rates_several_profiles_full_l1_layout():
    assert len(l1_block_times_us()) == 27
    noise = simulate(Scenario("noise", profiles=5), pairs=SIM_PAIRS, seed=SIM_SEED)
    slow = simulate(Scenario("slow", profiles=5, slowdown=0.10), pairs=SIM_PAIRS, seed=SIM_SEED)
    block = simulate(Scenario("block", profiles=5, slow_blocks=("stage2.block9",), slowdown=0.3),
                     pairs=SIM_PAIRS, seed=SIM_SEED)
    assert noise.fail_rate < 0.01
    assert slow.fail_rate > 0.95 and slow.model_regressed / slow.pairs > 0.95
    assert block.slow_blocks_caught / block.pairs > 0.95


def test_simulation_is_reproducible():
    sc = replace(Scenario("noise"), runs=5, blocks={"other": 1500.0})
    assert simulate(sc, pairs=50, seed=7).failed == simulate(sc, pairs=50, seed=7).failed


# ---------------------------------------------------------------- structure


def _record(**changes) -> CompileRecord:
    """A compile record shaped like the committed L1 one (figures of its size, not of a compile)."""
    fields = dict(
        qnn_version="2.51.0", ep_sdk_version="v2.51.0.260929181845", onnxruntime="1.31.1", onnxruntime_qnn="2.7.0",
        soc="sm8550", soc_model=43, htp_arch=73, fp16=False,
        model=CompiledModel(variant="l1", precision="w8a8", input_shape=[1, 3, 224, 224]),
        model_sha256="a" * 64, compile_s=1.4, context_binary_bytes=10_000, context_binary_sha256="b" * 64,
        op_trace="qnn_op_trace.json", htp_op_count=400, htp_op_types={"Conv2d": 300, "Gelu": 100},
    )
    return CompileRecord(**{**fields, **changes})


def _found(record: CompileRecord, name: str = "x") -> FoundCompile:
    return FoundCompile(record, Path(name) / "compile.json")


def _write(directory: Path, record: CompileRecord) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_compile_record(directory, record)


def test_compile_records_are_found_in_directories_and_files(tmp_path):
    one = _write(tmp_path / "build" / "l1", _record())
    _write(tmp_path / "build" / "encoder", _record(model=CompiledModel(variant="encoder")))
    (tmp_path / "build" / "l1" / "qnn-versions").mkdir()  # an export's own compile stands for its directory
    assert read_compile_structure(one.parent).record == _record()
    assert read_compile_structure(one).path == one
    assert [c.identity("variant") for c in read_compile_side([tmp_path / "build"]).compiles] == ["encoder", "l1"]
    with pytest.raises(UsageError, match="holds 2 compiles"):
        read_compile_structure(tmp_path / "build")
    with pytest.raises(ProfileError, match="no compile.json below"):
        read_compile_side([tmp_path / "build" / "l1" / "qnn-versions"])


def test_a_record_of_another_format_is_refused_naming_the_field(tmp_path):
    path = _write(tmp_path / "a", _record())
    data = json.loads(path.read_text())
    data["htp_fraction"] = 1.0  # the figure that could not fail, from before the CompileRecord
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"compile.json: not a valid compile record \(htp_fraction"):
        read_compile_structure(path)
    del data["htp_fraction"], data["context_binary_bytes"]
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="context_binary_bytes"):
        read_compile_structure(path)


def test_compiles_of_different_variants_are_refused_unless_allowed():
    base = _found(_record())
    xs = _found(_record(model=CompiledModel(variant="xs")), "xs")
    with pytest.raises(ProfileError, match="variant: l1 -> xs"):
        gate_structure(base, [xs], GateRules())
    assert gate_structure(base, [xs], GateRules(), allow_mismatch=True).mismatches == ["2.51.0: variant: l1 -> xs"]
    assert gate_structure(base, [_found(_record(model=CompiledModel()), "y")], GateRules()).passed  # unknown


def test_structure_gate_rules():
    base = _found(_record())
    same = _found(_record(qnn_version="2.52.0"), "a")
    grew = _found(_record(qnn_version="2.54.0", htp_op_count=430, context_binary_bytes=10_300), "b")
    leaner = _found(_record(qnn_version="2.55.0", htp_op_count=380), "c")
    untraced = _found(_record(qnn_version="2.47.0", op_trace=None, htp_op_count=None, htp_op_types=None), "d")
    failed = FoundFailure(CompileFailure(qnn_version="2.53.0", onnxruntime_qnn="2.9.0", onnxruntime="1.31.1",
                                         status="failed", error="HtpUnsupportedError: Gelu"), Path("e"))
    v = gate_structure(base, [same, grew, leaner, untraced], GateRules(), failures=[failed])
    m = by_metric(v)
    assert m["htp_op_count@2.52.0"].status is MetricStatus.UNCHANGED
    assert m["htp_op_count@2.54.0"].status is MetricStatus.REGRESSION  # +7.5% > 5%
    assert m["context_binary_bytes@2.54.0"].status is MetricStatus.UNCHANGED  # +3% <= 5%
    assert m["htp_op_count@2.55.0"].status is MetricStatus.IMPROVEMENT
    assert m["htp_op_count@2.47.0"].status is MetricStatus.MISSING_IN_CANDIDATE and "no op trace" in (
        m["htp_op_count@2.47.0"].reason)
    assert {r.metric for r in v.failures} == {"htp_op_count@2.54.0", "compile@2.53.0"}
    assert any("CPU fallback disabled: every node is on the HTP" in n for n in v.notes)
    assert not any("htp_fraction" in r.metric for r in v.results)  # no figure that cannot fail
    assert gate_structure(base, [same], GateRules()).passed


def _cost(layout: int, islands: int) -> GraphCost:
    return GraphCost(layout_ops=layout, boundary_layout_ops=min(layout, 1), float_islands=islands, boundary_conversions=2)


def test_layout_ops_and_float_islands_may_only_go_down():
    """faithful -> htp: fewer of both is an improvement; any new one fails the gate."""
    base = _found(_record(graph_cost=_cost(35, 4)))
    htp = _found(_record(graph_cost=_cost(1, 0)), "htp")
    worse = _found(_record(qnn_version="2.52.0", graph_cost=_cost(36, 5)), "w")
    m = by_metric(gate_structure(base, [htp], GateRules()))
    assert m["layout_ops"].status is m["float_islands"].status is MetricStatus.IMPROVEMENT
    v = gate_structure(_found(_record(graph_cost=_cost(1, 0))), [htp, worse], GateRules())
    m = by_metric(v)
    assert m["layout_ops@2.51.0"].status is MetricStatus.UNCHANGED
    assert m["layout_ops@2.52.0"].status is m["float_islands@2.52.0"].status is MetricStatus.REGRESSION
    assert {r.metric for r in v.failures} == {"layout_ops@2.52.0", "float_islands@2.52.0"}
    # A record without an op trace's figures (QNN 2.47) is not compared on them.
    assert "layout_ops" not in by_metric(gate_structure(base, [_found(_record(), "n")], GateRules()))


# ---------------------------------------------------------------- structure, on real compile output


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """A real (small) export of the encoder block, compiled by the export and again by the
    cross-version path with the bundled QNN (no toolchain install needed)."""
    from swiftformer_qnn.pipeline import ExportRequest, compile_export_across_versions, run_export

    root = tmp_path_factory.mktemp("structure")
    result = run_export(ExportRequest(variant="encoder", resolution=16, calibration_count=4, heldout_count=2,
                                      output_dir=root / "build" / "encoder-16"))
    report = compile_export_across_versions(result, "2.51")
    return {"export": result.directory, "manifest": result.manifest, "versions": result.directory / "qnn-versions",
            "report": report, "root": root}


def _vouch(export: Path, name: str) -> None:
    """Record the current size and SHA-256 of an export's file in its manifest."""
    from swiftformer_qnn.core.atomic import sha256_file

    manifest = json.loads((export / "manifest.json").read_text())
    for stage in manifest["stages"]:
        for out in stage["outputs"].values():
            if out["path"] == name:
                out.update(sha256=sha256_file(export / name), bytes=(export / name).stat().st_size)
    (export / "manifest.json").write_text(json.dumps(manifest))


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_the_export_and_the_toolchain_worker_write_the_same_record(compiled):

    (e,) = read_compile_side([compiled["export"]]).compiles
    assert e.record == CompileRecord.model_validate(compiled["manifest"].stage("compile").results)
    assert (e.identity("variant"), e.identity("precision"), e.identity("soc"), e.identity("input_shape")) == (
        "encoder", "w8a8", "sm8550", [1, 96, 16, 16])
    (w,) = read_compile_side([compiled["versions"]]).compiles  # qnn-<version>/compile.json
    assert w.path.parent.name == f"qnn-{w.qnn_version}"
    assert w.record == compiled["report"].versions[0].compile
    version_dir = w.path.parent
    trace = json.loads((version_dir / "qnn_op_trace.json").read_text())
    assert w.record.htp_op_count == sum(len(g["op_mappings"]) for g in trace["subgraph_traces"])
    # The same model compiled by the same QNN in two places: the same record but for time and binary bytes.
    timeless = {"compile_s", "context_binary_sha256"}  # QNN writes a run-specific binary: same size, other bytes
    timeless.add("bn_guard")  # the export's compile stage records the BN guard; cross-version runs it before the workers
    assert w.record.model_dump(exclude=timeless) == e.record.model_dump(exclude=timeless)

    v = gate_manifests([compiled["export"]], [compiled["versions"]], GateRules())
    assert v.passed and [r.metric for r in v.results] == [
        "htp_op_count", "layout_ops", "float_islands", "convert_ops", "context_binary_bytes"]
    assert v.candidate.variant == "encoder"


def test_structure_regressions_on_real_compile_output(compiled, tmp_path):
    cand = _copy_tree(compiled["versions"], tmp_path / "qnn-versions")
    ok = read_compile_structure(next(cand.glob("qnn-*"))).record
    _write(cand / "qnn-2.52.0", ok.model_copy(update={"qnn_version": "2.52.0", "htp_op_count": ok.htp_op_count + 3,
                                                      "context_binary_bytes": ok.context_binary_bytes * 2}))
    (cand / "qnn-2.53.0").mkdir()
    failure = CompileFailure(qnn_version="2.53.0", onnxruntime_qnn="2.9.0", onnxruntime="1.31.1", status="failed",
                             error="HtpUnsupportedError: Gelu", model=ok.model)
    (cand / "qnn-2.53.0" / "compile_failed.json").write_text(failure.model_dump_json())
    v = gate_manifests([compiled["export"]], [cand], GateRules())
    m = by_metric(v)
    assert not v.passed and m[f"htp_op_count@{ok.qnn_version}"].status is MetricStatus.UNCHANGED
    growth = 3 / ok.htp_op_count
    assert m["htp_op_count@2.52.0"].fails is (growth > 0.05)
    assert m["context_binary_bytes@2.52.0"].fails and "+100.0%" in m["context_binary_bytes@2.52.0"].reason
    assert m["compile@2.53.0"].fails and "Gelu" in m["compile@2.53.0"].reason
    # --threshold of `gate structure` sets both growth limits.
    loose = with_flags(GateRules(), structure_growth=1.5)
    assert {r.metric for r in gate_manifests([compiled["export"]], [cand], loose).failures} == {"compile@2.53.0"}


def test_structure_baseline_from_a_cross_version_entry_then_gate_against_it(compiled, tmp_path):
    from swiftformer_qnn.gate import update_structure_baseline

    two = _copy_tree(compiled["versions"], tmp_path / "two" / "qnn-versions")
    ok = read_compile_structure(next(two.glob("qnn-*"))).record
    _write(two / "qnn-2.52.0", ok.model_copy(update={"qnn_version": "2.52.0"}))
    with pytest.raises(UsageError, match="holds 2 compiles"):
        update_structure_baseline(two, root=tmp_path / "baselines")
    version_dir = compiled["versions"] / compiled["report"].versions[0].directory
    done = update_structure_baseline(version_dir, root=tmp_path / "baselines", note="QNN 2.51 compile")
    assert done.directory.name == "compile-encoder-w8a8-sm8550-qnn2-51-0"
    assert sorted(p.name for p in done.directory.iterdir()) == ["baseline.json", "compile.json"]
    assert (done.directory / "compile.json").read_bytes() == (version_dir / "compile.json").read_bytes()
    assert (done.record.variant, done.record.device, done.record.input_shape) == ("encoder", "sm8550", [1, 96, 16, 16])
    v = gate_manifests([done.directory], [compiled["versions"]], GateRules())
    assert v.passed and v.baseline.variant == "encoder"
    # Another variant's compile may not replace it.
    xs = _write(tmp_path / "xs-export", ok.model_copy(update={"model": CompiledModel(variant="xs")}))
    with pytest.raises(ProfileError, match="baseline of something else"):
        update_structure_baseline(xs, directory=done.directory)


def test_variant_picks_compiles_out_of_a_build_directory(compiled, tmp_path):
    build = tmp_path / "build"
    _copy_tree(compiled["export"], build / "encoder-16")
    xs = _copy_tree(compiled["export"], build / "xs-64")
    record = read_compile_structure(xs).record
    _write(xs, record.model_copy(update={"model": record.model.model_copy(update={"variant": "xs"})}))
    _vouch(xs, "compile.json")  # as an export of xs would record it (an edit it does not vouch for is refused)
    with pytest.raises(ProfileError, match="variant: encoder -> xs"):
        gate_manifests([compiled["export"]], [build], GateRules())
    v = gate_manifests([compiled["export"]], [build], GateRules(), variant="encoder")
    assert v.passed and v.candidate.paths == [str(build / "encoder-16" / "compile.json")]
    with pytest.raises(ProfileError, match="No l1 compiles in the baseline"):
        gate_manifests([compiled["export"]], [build], GateRules(), variant="l1")


def test_a_side_gated_against_itself_is_refused(compiled):
    with pytest.raises(UsageError, match="share"):
        gate_manifests([compiled["export"]], [compiled["export"] / "compile.json"], GateRules())


def test_profiles_gated_against_themselves_are_refused(tmp_path):
    rng = np.random.default_rng(30)
    first, second = side(rng, 2, job_id="jx")
    first.save(tmp_path / "base" / "job0" / "l1.profile.json")
    second.save(tmp_path / "cand" / "l1.profile.json")
    with pytest.raises(UsageError, match="share"):
        gate_paths([tmp_path / "base"], [tmp_path / "base" / "job0"], GateRules())
    # Two files holding one AI Hub profile job: the same measurement on both sides.
    with pytest.raises(UsageError, match="same AI Hub profile job jx"):
        gate_paths([tmp_path / "base"], [tmp_path / "cand"], GateRules())


# ---------------------------------------------------------------- baselines and outputs


def test_update_baseline_then_gate_against_it(tmp_path):
    rng = np.random.default_rng(20)
    for i, p in enumerate(side(rng, 1, job_id="ja") + side(rng, 1, job_id="jb")):
        p.save(tmp_path / "cand" / f"job{i}" / "l1.profile.json")
    done = update_baseline([tmp_path / "cand"], root=tmp_path / "baselines", note="first")
    assert done.directory == tmp_path / "baselines" / "l1-w8a8-samsung-galaxy-s23-ultra-aihub"
    assert done.replaced is None and done.record.runs == 40 and done.record.job_ids == ["ja", "jb"]
    assert len(list(done.directory.glob("*.profile.json"))) == 2  # same names from two jobs kept apart
    # The baseline's copies are the candidate's own measurements: gating one against the other is refused.
    with pytest.raises(UsageError, match="same AI Hub profile job"):
        gate_paths([done.directory], [tmp_path / "cand"], GateRules())
    for i, p in enumerate(side(rng, 2, job_id=None)):
        p.save(tmp_path / "next" / f"job{i}" / "l1.profile.json")
    assert gate_paths([done.directory], [tmp_path / "next"], GateRules()).passed
    again = update_baseline([tmp_path / "cand"], root=tmp_path / "baselines")
    assert again.replaced is not None and again.replaced.note == "first"
    xs = side(rng, 1, variant="xs")[0]
    xs.save(tmp_path / "xs" / "xs.profile.json")
    with pytest.raises(ProfileError, match="baseline of something else"):
        update_baseline([tmp_path / "xs"], directory=done.directory)


def test_markdown_and_junit_name_the_regression_and_the_source():
    rng = np.random.default_rng(21)
    v = gate_profiles(side(rng, 5), side(rng, 5, block_scale={"stage0.block0": 1.3}), GateRules())
    md = render_markdown(v)
    assert "FAILED" in md and "baseline (aihub, us)" in md and "latency source `aihub`" in md
    first_row = next(line for line in md.splitlines() if line.startswith("| ❌"))
    assert "`stage0.block0`" in first_row
    root = ET.fromstring(render_junit(v).split("\n", 1)[1])
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [r.metric for r in v.results]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["stage0.block0"] and root.get("failures") == "1"
    assert GateVerdict.model_validate_json(v.model_dump_json()) == v
