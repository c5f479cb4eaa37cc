"""`swiftformer-qnn gate latency|structure|accept` through typer's CliRunner: exit codes, CI outputs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from gate_sim import synthetic_profile
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.gate import GateVerdict
from swiftformer_qnn.htp.record import CompiledModel, CompileRecord, write_compile_record
from swiftformer_qnn.measure.schema import Profile

BLOCKS = {"stem": 200.0, "stage0.block0": 100.0, "stage2.block9": 300.0, "head": 60.0, "other": 1000.0}
runner = CliRunner()


def write_side(directory: Path, seed: int, n_profiles: int = 3, *, block_scale=None, **kw) -> Path:
    rng = np.random.default_rng(seed)
    block_scale = block_scale or {}
    total = sum(t * block_scale.get(b, 1.0) for b, t in BLOCKS.items())
    for i in range(n_profiles):
        blocks = {b: t * block_scale.get(b, 1.0) * rng.lognormal(0, 0.03) for b, t in BLOCKS.items()}
        p = synthetic_profile(total * rng.lognormal(0, 0.03, 20), blocks, job_id=f"j{seed}{i}", **kw)
        p.save(directory / f"job{i}" / "l1-w8a8.profile.json")
    return directory


@pytest.fixture
def sides(tmp_path):
    return {
        "base": write_side(tmp_path / "base", 1, 5),
        "same": write_side(tmp_path / "same", 2, 5),
        "slow": write_side(tmp_path / "slow", 3, 5, block_scale={"stage0.block0": 1.4}),
        "xs": write_side(tmp_path / "xs", 4, 1, variant="xs"),
    }


def gate(*args: str, env: dict | None = None):
    # A CI runner's own $GITHUB_STEP_SUMMARY must not leak into the tests.
    return runner.invoke(app, ["gate", *map(str, args)], env={"GITHUB_STEP_SUMMARY": None, **(env or {})})


def latency(*args, env: dict | None = None):
    return gate("latency", *args, env=env)


def structure(*args):
    return gate("structure", *args)


def test_equal_profiles_pass_with_exit_0_and_write_three_outputs(sides, tmp_path):
    r = latency("--baseline", sides["base"], "--candidate", sides["same"], "--report-dir", tmp_path / "report")
    assert r.exit_code == 0, r.output
    assert "gate passed" in r.stdout and "aihub" in r.stdout
    verdict = GateVerdict.model_validate_json((tmp_path / "report" / "gate.json").read_text())
    assert verdict.passed and verdict.baseline.profiles == 5 and verdict.baseline.runs == 100
    cases = ET.parse(tmp_path / "report" / "gate.junit.xml").getroot().findall(".//testcase")
    assert [c.get("name") for c in cases] == ["model", *BLOCKS]
    assert all(c.find("failure") is None for c in cases)
    assert "gate passed" in (tmp_path / "report" / "gate.md").read_text()


def test_a_regression_exits_1_and_names_the_block_everywhere(sides, tmp_path):
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    r = latency("-b", sides["base"], "-c", sides["slow"], "--junit", tmp_path / "g.xml", "--json",
                tmp_path / "g.json", "--markdown", tmp_path / "g.md", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.exit_code == 1, r.output
    assert "FAIL stage0.block0 slower: +4" in r.stdout  # a 40% slowdown drawn with 3% noise
    failed = [c.get("name") for c in ET.parse(tmp_path / "g.xml").getroot().iter("testcase")
              if c.find("failure") is not None]
    assert failed == ["stage0.block0"]
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["passed"] is False and data["exit_code"] == 1
    assert [m["metric"] for m in data["results"] if m["status"] == "regression"] == ["stage0.block0"]
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, as GitHub expects
    assert "`stage0.block0`" in text and text == "earlier step\n" + (tmp_path / "g.md").read_text() + "\n"


def test_an_improvement_passes_and_is_reported(sides):
    r = latency("-b", sides["slow"], "-c", sides["base"])
    assert r.exit_code == 0, r.output
    assert "improved stage0.block0 faster" in r.stdout


def test_block_threshold_flag_relaxes_one_block(sides):
    assert latency("-b", sides["base"], "-c", sides["slow"], "--block-threshold", "stage0.*=50%").exit_code == 0
    assert latency("-b", sides["base"], "-c", sides["slow"], "--block-floor", "stage0.block0=80").exit_code == 0
    assert latency("-b", sides["base"], "-c", sides["slow"], "--block-threshold", "head=50%").exit_code == 1


def test_pyproject_rules_apply_from_the_working_directory_and_from_config(sides, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.swiftformer-qnn.gate]\n[tool.swiftformer-qnn.gate.blocks]\n"stage0.block0" = { relative_threshold = 0.6 }\n'
    )
    assert latency("-b", sides["base"], "-c", sides["slow"], "--config", project / "pyproject.toml").exit_code == 0
    monkeypatch.chdir(project)
    assert latency("-b", sides["base"], "-c", sides["slow"]).exit_code == 0
    # A flag beats the file.
    assert latency("-b", sides["base"], "-c", sides["slow"], "--block-threshold", "stage0.block0=5%").exit_code == 1


def test_different_variants_exit_2_unless_allowed(sides):
    r = latency("-b", sides["base"], "-c", sides["xs"])
    assert r.exit_code == 2
    assert "variant: l1 -> xs" in r.stderr and "--allow-mismatch" in r.stderr
    assert latency("-b", sides["base"], "-c", sides["xs"], "--allow-mismatch").exit_code in (0, 1)


def test_variant_picks_the_model_out_of_a_profile_run(sides, tmp_path):
    # `profile` writes the standalone encoder block's profile beside the model's.
    write_side(tmp_path / "run", 5, 2, variant="encoder")
    for f in sides["same"].rglob("*.profile.json"):
        (tmp_path / "run" / f.parent.name / f.name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "run" / f.parent.name / "l1.profile.json").write_bytes(f.read_bytes())
    r = latency("-b", sides["base"], "-c", tmp_path / "run")
    assert r.exit_code == 2 and "--variant" in r.stderr
    assert latency("-b", sides["base"], "-c", tmp_path / "run", "--variant", "l1").exit_code == 0
    assert "No l3 profiles" in latency("-b", sides["base"], "-c", tmp_path / "run", "--variant", "l3").stderr


@pytest.mark.parametrize("args, message", [
    (["--threshold", "5"], "fraction below 1"),
    (["--statistic", "p99"], "statistic"),
    (["--block-threshold", "0.1"], "PATTERN=NUMBER"),
])
def test_bad_options_exit_2(sides, args, message):
    r = latency("-b", sides["base"], "-c", sides["same"], *args)
    assert r.exit_code == 2 and message in r.stderr


def test_input_errors_exit_2(sides, tmp_path):
    missing = latency("-b", tmp_path / "nope.profile.json", "-c", sides["same"]).stderr
    assert "no such profile file" in missing and "Pass a *.profile.json" in missing  # and what to do
    (tmp_path / "empty").mkdir()
    empty = latency("-b", tmp_path / "empty", "-c", sides["same"]).stderr
    assert "no *.profile.json files in this baseline directory" in empty and "Pass --baseline" in empty
    assert latency("-c", sides["same"]).exit_code == 2
    (tmp_path / "bad.profile.json").write_text("{")
    r = latency("-b", tmp_path / "bad.profile.json", "-c", sides["same"])
    assert r.exit_code == 2 and "not a JSON profile" in r.stderr
    (tmp_path / "a-file").write_text("")
    r = latency("-b", sides["base"], "-c", sides["same"], "--report-dir", tmp_path / "a-file")
    assert r.exit_code == 2 and "Cannot write the gate report" in r.stderr


def test_a_report_that_cannot_be_written_leaves_no_other_written(sides, tmp_path):
    """`--report-dir new --json DIR` wrote new/'s three reports, then failed on the JSON, and the
    error named a temporary file."""
    (tmp_path / "a-dir").mkdir()
    r = latency("-b", sides["base"], "-c", sides["same"], "--report-dir", tmp_path / "new",
                "--markdown", tmp_path / "gate.md", "--json", tmp_path / "a-dir")
    assert r.exit_code == 2, r.output
    assert f"Cannot write the gate report {tmp_path / 'a-dir'}: it is a directory" in r.output
    assert ".tmp" not in r.output
    assert not (tmp_path / "new").exists() and not (tmp_path / "gate.md").exists()


def test_a_step_summary_whose_folder_is_missing_is_refused_before_any_report(sides, tmp_path):
    """$GITHUB_STEP_SUMMARY is appended to where it is (no folder is made for it): a missing folder
    failed only after the other reports were written."""
    summary = tmp_path / "earlier.md"
    summary.write_text("earlier step\n")
    r = latency("-b", sides["base"], "-c", sides["same"], env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.exit_code == 0, r.output
    assert summary.read_text().startswith("earlier step\n") and len(summary.read_text()) > 20
    r = latency("-b", sides["base"], "-c", sides["same"], "--markdown", tmp_path / "gate.md",
                env={"GITHUB_STEP_SUMMARY": str(tmp_path / "missing" / "summary.md")})
    assert r.exit_code == 2 and "is not a directory" in r.stderr
    assert not (tmp_path / "gate.md").exists()


def test_emulator_profiles_exit_2(sides, tmp_path):
    p = Profile.model_validate({
        **synthetic_profile([1.0]).model_dump(exclude={"latency", "ops", "source"}), "source": "emulator",
    })
    p.save(tmp_path / "emu" / "e.profile.json")
    p.save(tmp_path / "emu2" / "e.profile.json")
    r = latency("-b", tmp_path / "emu", "-c", tmp_path / "emu2")
    assert r.exit_code == 2 and "emulator" in r.stderr and "gate structure" in r.stderr


def test_update_baseline_then_gate_against_it(sides, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = gate("accept", "latency", "-c", sides["base"], "--note", "QNN 2.51 baseline")
    assert r.exit_code == 0, r.output
    target = tmp_path / "profiles" / "baselines" / "l1-w8a8-samsung-galaxy-s23-ultra-aihub"
    record = json.loads((target / "baseline.json").read_text())
    assert record["note"] == "QNN 2.51 baseline" and len(record["files"]) == 5 and record["runs"] == 100
    assert latency("-b", target, "-c", sides["same"]).exit_code == 0
    assert latency("-b", target, "-c", sides["slow"]).exit_code == 1
    # The xs candidate may not overwrite the l1 baseline without being told to.
    assert gate("accept", "latency", "-b", target, "-c", sides["xs"]).exit_code == 2
    assert gate("accept", "latency", "-b", target, "-c", sides["xs"], "--allow-mismatch").exit_code == 0


def _compile(directory: Path, variant: str | None = "l1", **changes) -> Path:
    """A compile.json shaped like the committed L1 record (figures of its size, not of a compile)."""
    fields = dict(
        qnn_version="2.51.0", ep_sdk_version="v2.51.0.260929181845", onnxruntime="1.31.1", onnxruntime_qnn="2.7.0",
        soc="sm8550", soc_model=43, htp_arch=73, fp16=False, model=CompiledModel(variant=variant),
        model_sha256="a" * 64, compile_s=1.4, context_binary_bytes=10_000_000, context_binary_sha256="b" * 64,
        op_trace="qnn_op_trace.json", htp_op_count=400, htp_op_types={"Conv2d": 400},
    )
    directory.mkdir(parents=True, exist_ok=True)
    return write_compile_record(directory, CompileRecord(**{**fields, **changes}))


def test_structure_mode(tmp_path):
    base = _compile(tmp_path / "base")
    _compile(tmp_path / "cands" / "qnn-2.52", qnn_version="2.52.0")
    r = structure("-b", base, "-c", tmp_path / "cands", "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    _compile(tmp_path / "cands" / "qnn-2.53", qnn_version="2.53.0", context_binary_bytes=11_000_000)
    r = structure("-b", base, "-c", tmp_path / "cands", "--json", tmp_path / "s.json")
    assert r.exit_code == 1
    failed = [m["metric"] for m in json.loads((tmp_path / "s.json").read_text())["results"] if m["fails"]]
    assert failed == ["context_binary_bytes@2.53.0"]
    assert structure("-b", tmp_path / "cands", "-c", base).exit_code == 2  # two baselines


def test_structure_threshold_and_variant_apply(tmp_path):
    base = _compile(tmp_path / "base")
    _compile(tmp_path / "build" / "l1", htp_op_count=412)  # +3%
    _compile(tmp_path / "build" / "encoder", "encoder", htp_op_count=40)
    build = tmp_path / "build"
    r = structure("-b", base, "-c", build)
    assert r.exit_code == 2 and "variant: l1 -> encoder" in r.stderr  # the block's compile is not L1's
    assert structure("-b", base, "-c", build, "--variant", "l1").exit_code == 0  # +3% <= 5%
    r = structure("-b", base, "-c", build, "--variant", "l1", "--threshold", "2%")
    assert r.exit_code == 1 and "htp_op_count grew beyond the 2% limit" in r.stdout
    r = structure("-b", base, "-c", build, "--variant", "xs")
    assert r.exit_code == 2 and "No xs compiles" in r.stderr


def test_each_subcommand_takes_only_its_own_options():
    import typer.main

    gate_group = typer.main.get_command(app).commands["gate"]
    opts = {name: {o for p in cmd.params for o in p.opts if o.startswith("--")}
            for name, cmd in gate_group.commands.items()}
    latency_rules = {"--floor-us", "--statistic", "--confidence", "--block-threshold", "--block-floor",
                     "--fail-on-missing"}
    reports = {"--report-dir", "--markdown", "--junit", "--json", "--config", "--threshold"}
    assert latency_rules <= opts["latency"] and not latency_rules & opts["structure"]
    assert reports <= opts["latency"] & opts["structure"] and not reports & opts["accept"]
    assert "--note" in opts["accept"] and "--note" not in opts["latency"] | opts["structure"]


@pytest.mark.parametrize("args", [
    ["structure", "--floor-us", "10"], ["structure", "--block-threshold", "head=10%"],
    ["accept", "latency", "--threshold", "3%"], ["accept", "latency", "--json", "g.json"],
    ["latency", "--note", "x"],
])
def test_an_option_of_another_subcommand_is_a_usage_error(sides, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    r = gate(*args, "-b", tmp_path / "new", "-c", sides["base"])
    assert r.exit_code == 2 and f"No such option: {args[-2]}" in r.stderr
    assert not (tmp_path / "new").exists() and not (tmp_path / "g.json").exists()


def test_accept_structure_then_gate_against_it(tmp_path):
    compiled = _compile(tmp_path / "build")
    r = gate("accept", "structure", "-c", compiled, "-b", tmp_path / "base", "--note", "first")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "base" / "baseline.json").read_text())["mode"] == "structure"
    grown = _compile(tmp_path / "cand", htp_op_count=440)
    r = structure("-b", tmp_path / "base", "-c", grown)
    assert r.exit_code == 1 and "htp_op_count grew beyond the 5% limit" in r.stdout
    # One compile only: a cross-version comparison must name one version.
    r = gate("accept", "structure", "-c", compiled, "-c", grown, "-b", tmp_path / "other")
    assert r.exit_code == 2 and "one candidate compile" in r.stderr and not (tmp_path / "other").exists()


def test_a_side_gated_against_itself_exits_2(sides, tmp_path):
    r = latency("-b", sides["base"], "-c", sides["base"])
    assert r.exit_code == 2 and "share" in r.stderr and "passes trivially" in r.stderr
    m = _compile(tmp_path / "m")
    r = structure("-b", m, "-c", m.parent)
    assert r.exit_code == 2 and "share" in r.stderr
    # The same AI Hub profile job in another file (a copy) is the same measurement.
    copy = tmp_path / "copy"
    copy.mkdir()
    first = next(sides["base"].rglob("*.profile.json"))
    (copy / "l1.profile.json").write_bytes(first.read_bytes())
    r = latency("-b", sides["base"], "-c", copy)
    assert r.exit_code == 2 and "same AI Hub profile job" in r.stderr


# ---------------------------------------------------------------- the documented recipe stays runnable

DOCS = Path(__file__).resolve().parents[1] / "docs"
COMPILE_BASELINE = DOCS.parent / "profiles" / "baselines" / "compile-l1-w8a8-sm8550-qnn2-51-0"


def test_the_pyproject_example_in_ci_md_is_valid():
    import re
    import tomllib

    from swiftformer_qnn.gate import GateRules

    block = re.search(r"```toml\n(.*?)```", (DOCS / "ci.md").read_text(), re.S).group(1)
    rules = GateRules.model_validate(tomllib.loads(block)["tool"]["swiftformer-qnn"]["gate"])
    assert rules.rule_for("stage2.block9") == (0.10, 20.0)
    assert rules.rule_for("stage3.downsample") == (0.05, 40.0)


def test_the_example_workflow_uses_only_real_options():
    import re

    import typer.main
    workflow = _workflow()
    group = typer.main.get_command(app)
    used: dict[str, set[str]] = {}
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "").replace("\\\n", " ")  # join shell line continuations
            for call in re.findall(r"swiftformer-qnn ([^\n]*)", script):
                words = call.split()
                command, name = group, []
                while hasattr(command, "commands") and words and words[0] in command.commands:
                    command = command.commands[words[0]]
                    name.append(words.pop(0))
                known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
                flags = set(re.findall(r"(--[\w-]+)", " ".join(words)))
                assert flags <= known, f"{' '.join(name)}: {flags - known}"
                used.setdefault(" ".join(name), set()).update(flags)
    assert {"export", "profile", "gate latency", "gate structure", "gate accept"} <= set(used)
    assert {"--from", "--new-jobs", "--out"} <= used["profile"]
    assert "secrets.QAI_HUB_API_TOKEN" in (DOCS / "examples" / "swiftformer-latency-gate.yml").read_text()
    # The structure job gates the cross-version compiles against the committed structural baseline.
    assert workflow["env"]["COMPILE_BASELINE"] == str(COMPILE_BASELINE.relative_to(DOCS.parent))
    assert "--qnn" in used["export"] and {"--baseline", "--candidate"} <= used["gate structure"]


def _workflow() -> dict:
    import yaml  # PyYAML: installed with transformers (the test extra)

    return yaml.safe_load((DOCS / "examples" / "swiftformer-latency-gate.yml").read_text())


def test_the_example_workflow_writes_the_token_into_a_private_client_ini(tmp_path):
    """The configure step, run as GitHub runs it (bash), with a made-up token: the token goes into
    a mode-0600 client.ini the real client reads through QAIHUB_CLIENT_INI, never onto a command line."""
    import os
    import secrets
    import stat
    import subprocess

    from qai_hub.api_utils import load_api_config_from_file

    steps = [s for job in _workflow()["jobs"].values() for s in job["steps"]]
    (step,) = [s for s in steps if "QAI_HUB_API_TOKEN" in str(s.get("env", {}))]
    script = step["run"]
    assert "--api_token" not in script and "qai-hub configure" not in script
    assert all("--api_token" not in s.get("run", "") for s in steps)
    token = f"sfq-test-token-{secrets.token_hex(12)}"
    runner_temp, github_env = tmp_path / "runner-temp", tmp_path / "github-env"
    runner_temp.mkdir()
    env = {"PATH": os.environ["PATH"], "QAI_HUB_API_TOKEN": token, "RUNNER_TEMP": str(runner_temp),
           "GITHUB_ENV": str(github_env)}
    subprocess.run(["bash", "-e", "-c", script], env=env, check=True, cwd=tmp_path)
    key, _, value = github_env.read_text().strip().partition("=")
    ini = Path(value)
    assert key == "QAIHUB_CLIENT_INI" and ini.is_file() and ini.is_relative_to(runner_temp)
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    config = load_api_config_from_file(str(ini))
    assert config.api_token == token and config.api_url.startswith("https://")


@pytest.mark.slow
def test_the_documented_structural_gate_passes_on_the_default_l1_export(tmp_path, monkeypatch):
    """docs/ci.md and the example workflow: `export --variant l1 --qnn ...`, then gate its
    qnn-versions/ (and the export itself) against the committed structural baseline."""
    monkeypatch.chdir(tmp_path)
    done = runner.invoke(app, ["export", "--variant", "l1", "--qnn", "2.51"])
    assert done.exit_code == 0, done.output
    for candidate in ("build/l1-w8a8-sm8550/qnn-versions", "build/l1-w8a8-sm8550"):
        r = structure("--baseline", COMPILE_BASELINE, "--candidate", candidate,
                 "--json", tmp_path / "s.json")
        assert r.exit_code == 0, r.output
        verdict = GateVerdict.model_validate_json((tmp_path / "s.json").read_text())
        # deterministic: the same compile (HTP ops, layout ops, float islands, context binary size)
        assert [m.status.value for m in verdict.results] == ["unchanged"] * 4
