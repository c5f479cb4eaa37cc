"""`gate latency|structure|accept`: fail CI when the phone got slower (or the compile structure got
worse), pass when not; accept a candidate as the new baseline."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import UsageError
from ..core.text import terminal_safe
from ._app import app, console, err_console, guarded, next_step

gate_app = typer.Typer(
    name="gate",
    help="CI gates: `latency` (device profiles), `structure` (compiles, no device); `accept` a new baseline.\n\n"
         "Exit 0 pass, 1 regression, 2 usage or input error.",
    no_args_is_help=True,
)
app.add_typer(gate_app)

# Options both gates take, with the same meaning.
VariantOpt = Annotated[str | None, typer.Option(
    "--variant", help="Only this variant's profiles or compiles on each side (profile also writes the "
    "encoder block's).")]
AllowMismatchOpt = Annotated[bool, typer.Option(
    "--allow-mismatch", help="Compare sides of different variants, precisions, devices, sources or input "
    "shapes.")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="pyproject.toml to read \\[tool.swiftformer-qnn.gate] from (default: the nearest one at "
    "or above the working directory).")]
ReportDirOpt = Annotated[Path | None, typer.Option(
    "--report-dir", help="Write gate.md, gate.junit.xml and gate.json here.")]
MarkdownOpt = Annotated[Path | None, typer.Option("--markdown", help="Write the Markdown summary here.")]
JunitOpt = Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here (one case per metric).")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the JSON verdict here; '-' prints it on "
                                              "stdout instead of the tables.")]
STDOUT = Path("-")


def _required(paths: list[Path] | None, flag: str, hint: str) -> list[Path]:
    if not paths:
        raise UsageError(f"{flag} is required.", hint=hint)
    return paths


@gate_app.command("latency")
@guarded
def latency(
    baseline: Annotated[list[Path] | None, typer.Option(
        "--baseline", "-b", help="Baseline profiles: files or directories of *.profile.json (repeatable).",
    )] = None,
    candidate: Annotated[list[Path] | None, typer.Option(
        "--candidate", "-c", help="Candidate profiles: files or directories (repeatable).",
    )] = None,
    variant: VariantOpt = None,
    threshold: Annotated[str | None, typer.Option(
        "--threshold", help="Relative change that counts, e.g. 5% or 0.05 (default: pyproject, else 5%; for "
        "estimate profiles, which are deterministic, estimate_threshold, else 2%).",
    )] = None,
    floor_us: Annotated[float | None, typer.Option(
        "--floor-us", min=0,
        help="Ignore changes smaller than this many microseconds (default: pyproject, else 20; estimates: 0).",
    )] = None,
    statistic: Annotated[str | None, typer.Option(
        "--statistic",
        help="Statistic of the runs on each side: median, mean or min (default: pyproject, else median).",
    )] = None,
    confidence: Annotated[float | None, typer.Option(
        "--confidence", help="Level of the bootstrap interval that a change must clear (default 0.95).",
    )] = None,
    block_threshold: Annotated[list[str] | None, typer.Option(
        "--block-threshold",
        help="PATTERN=THRESHOLD for matching metrics, e.g. 'stage3.*=10%' or model=3% (repeatable).",
    )] = None,
    block_floor: Annotated[list[str] | None, typer.Option(
        "--block-floor", help="PATTERN=MICROSECONDS floor for matching metrics, e.g. head=50 (repeatable).",
    )] = None,
    fail_on_missing: Annotated[bool | None, typer.Option(
        "--fail-on-missing/--no-fail-on-missing", show_default=False,
        help="Fail when a block is present on one side only (default: report it, pass).",
    )] = None,
    allow_mismatch: AllowMismatchOpt = False,
    config: ConfigOpt = None,
    report_dir: ReportDirOpt = None,
    markdown: MarkdownOpt = None,
    junit: JunitOpt = None,
    json_out: JsonOpt = None,
) -> None:
    """Compare a candidate's device latency (whole model and each block) with a baseline's.

    $GITHUB_STEP_SUMMARY, when set, gets the Markdown summary appended.
    """
    from .. import gate as g

    baseline = _required(baseline, "--baseline", "Pass the baseline's profiles, e.g. --baseline "
                         "profiles/baselines/l1-w8a8-samsung-galaxy-s23-ultra-aihub.")
    candidate = _required(candidate, "--candidate", "Pass the candidate's profile files or directory.")
    rules, _ = g.load_rules(config)
    rules = g.with_flags(
        rules,
        relative_threshold=g.parse_fraction(threshold, flag="--threshold") if threshold is not None else None,
        absolute_floor_us=floor_us,
        statistic=statistic.lower().strip() if statistic else None,
        confidence=confidence,
        fail_on_missing=fail_on_missing,
        block_thresholds=g.parse_overrides(block_threshold or [], "relative_threshold", flag="--block-threshold"),
        block_floors=g.parse_overrides(block_floor or [], "absolute_floor_us", flag="--block-floor"),
    )
    verdict = g.gate_paths(baseline, candidate, rules, allow_mismatch=allow_mismatch, variant=variant)
    _conclude(g, verdict, report_dir=report_dir, markdown=markdown, junit=junit, json_out=json_out)


@gate_app.command("structure")
@guarded
def structure(
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", "-b", help="One compile: a committed structural baseline, an export or compile directory "
        "or its compile.json, a qnn-versions/qnn-<version>/ directory.",
    )] = None,
    candidate: Annotated[list[Path] | None, typer.Option(
        "--candidate", "-c", help="Compiles (repeatable): export or compile directories, a qnn-versions "
        "directory of `export --qnn` (one compile per QNN version), compile.json files.",
    )] = None,
    variant: VariantOpt = None,
    threshold: Annotated[str | None, typer.Option(
        "--threshold", help="Growth allowed to the HTP op count and the context binary, e.g. 5% or 0.05 "
        "(default: pyproject, else 5%).",
    )] = None,
    allow_mismatch: AllowMismatchOpt = False,
    config: ConfigOpt = None,
    report_dir: ReportDirOpt = None,
    markdown: MarkdownOpt = None,
    junit: JunitOpt = None,
    json_out: JsonOpt = None,
) -> None:
    """Compare compiles with one baseline compile, no device: HTP op count, context binary, QNN versions.

    $GITHUB_STEP_SUMMARY, when set, gets the Markdown summary appended.
    """
    from .. import gate as g

    if baseline is None:
        raise UsageError("--baseline is required.", hint="Pass one compile, e.g. --baseline "
                         "profiles/baselines/compile-l1-w8a8-sm8550-qnn2-51-0.")
    candidate = _required(candidate, "--candidate", "Pass the candidate compiles, e.g. --candidate "
                          "build/l1-w8a8-sm8550/qnn-versions.")
    rules, _ = g.load_rules(config)
    growth = g.parse_fraction(threshold, flag="--threshold") if threshold is not None else None
    rules = g.with_flags(rules, structure_growth=growth)
    verdict = g.gate_manifests([baseline], candidate, rules, allow_mismatch=allow_mismatch, variant=variant)
    _conclude(g, verdict, report_dir=report_dir, markdown=markdown, junit=junit, json_out=json_out)


class BaselineKind(str, Enum):
    latency = "latency"
    structure = "structure"


@gate_app.command("accept")
@guarded
def accept(
    kind: Annotated[BaselineKind, typer.Argument(
        metavar="KIND", show_default=False, help="latency: profiles; structure: one compile.",
    )],
    candidate: Annotated[list[Path] | None, typer.Option(
        "--candidate", "-c", help="latency: profile files or directories (repeatable); structure: one compile "
        "(an export directory, or one version's <export>/qnn-versions/qnn-<version>/).",
    )] = None,
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", "-b", help="The baseline directory to write (default: profiles/baselines/<variant>-"
        "<precision>-<device>-<source>, or compile-<variant>-<precision>-<soc>-qnn<version>).",
    )] = None,
    variant: Annotated[str | None, typer.Option(
        "--variant", help="Only this variant's profiles or compiles of the candidate.",
    )] = None,
    allow_mismatch: Annotated[bool, typer.Option(
        "--allow-mismatch",
        help="Replace a baseline of another variant, precision, device, source or input shape.",
    )] = False,
    note: Annotated[str | None, typer.Option(
        "--note", help="Why the baseline changed (kept in baseline.json).",
    )] = None,
) -> None:
    """Write the candidate as the new baseline, with its provenance (baseline.json); it does not gate."""
    from .. import gate as g

    candidate = _required(candidate, "--candidate", "Pass the candidate to keep, e.g. --candidate "
                          "reports/candidate.")
    if kind is BaselineKind.structure:
        if len(candidate) != 1:
            raise UsageError("gate accept structure takes one candidate compile.",
                             hint="Name one version's directory, e.g. <export>/qnn-versions/qnn-<version>/.")
        done = g.update_structure_baseline(candidate[0], directory=baseline, allow_mismatch=allow_mismatch,
                                           note=note, variant=variant)
    else:
        done = g.update_baseline(candidate, directory=baseline, allow_mismatch=allow_mismatch, note=note,
                                 variant=variant)
    r = done.record
    what = (f"{r.variant} {r.precision} on {r.device}, source {r.source}, QNN {r.qnn_version}, {r.runs} runs "
            f"in {len(r.files)} profile{'s' * (len(r.files) != 1)}") if r.mode == "profile" \
        else (f"compile structure of {r.variant} {r.precision} for {r.device}, QNN {r.qnn_version}" if r.variant
              else f"compile structure, QNN {r.qnn_version}")
    console.print(Text(f"baseline {'replaced' if done.replaced else 'written'} ({what}):"), highlight=False)
    console.print(Text(f"  {done.directory}"), soft_wrap=True, highlight=False)
    next_step(console, f"git add {done.directory}", why="commit it: CI gates against the committed baseline")


def _conclude(g, verdict, *, report_dir: Path | None, markdown: Path | None, junit: Path | None,
              json_out: Path | None) -> None:
    """Write the reports, render the verdict, exit 1 on a regression."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    to_stdout = json_out == STDOUT
    written = g.write_outputs(verdict, report_dir=report_dir, markdown=markdown, junit=junit,
                              json_path=None if to_stdout else json_out,
                              step_summary=Path(summary) if summary else None)
    if to_stdout:
        sys.stdout.write(g.outputs.render_json(verdict))
    else:
        _render(g, verdict)
    for p in written:
        err_console.print(Text(f"wrote {p}"), highlight=False, soft_wrap=True)
    if not to_stdout:
        report = next((p for p in written if p.suffix == ".md"), None)
        if verdict.passed:
            next_step(console, "swiftformer-qnn gate accept " + ("latency" if verdict.mode == "profile" else "structure")
                      + " --candidate CANDIDATE", why="nothing regressed; to make the candidate the new baseline",
                      open_file=report)
        else:
            next_step(console, "swiftformer-qnn report --compare BASELINE_PROFILE CANDIDATE_PROFILE"
                      if verdict.mode == "profile" else "swiftformer-qnn report --compare BASELINE CANDIDATE",
                      why="see where the regression sits, block by block or op type by op type", open_file=report)
    if not verdict.passed:
        raise typer.Exit(verdict.exit_code)


def _render(g, v) -> None:
    from rich.text import Text

    from ..core.tables import Col, FitTable

    style = {"regression": "bold red", "improvement": "green", "within-noise": "yellow",
             "missing-in-candidate": "magenta", "missing-in-baseline": "cyan", "unchanged": "dim"}
    # The status sits beside the metric: a table split for a narrow terminal keeps them together.
    columns = [Col("metric", "key"), Col("status", "label")]
    if v.mode == "profile":
        columns += [Col(f"baseline ({v.baseline.source}, us)", "number", short="base (us)"),
                    Col(f"candidate ({v.candidate.source}, us)", "number", short="cand. (us)"),
                    Col("change", "number"),
                    Col(f"{v.rules.confidence * 100:g}% interval", "number", short=f"{v.rules.confidence * 100:g}% CI"),
                    Col("P(slower)", "number")]
    else:
        columns += [Col("baseline", "number", short="base"), Col("candidate", "number", short="cand."),
                    Col("change", "number")]
    rows = []
    for r in v.results:
        row = [r.metric, Text(r.status.value, style=style[r.status.value]), g.outputs.fmt_value(r.baseline, r.unit),
               g.outputs.fmt_value(r.candidate, r.unit), g.outputs.fmt_change(r)]
        if v.mode == "profile":
            row += [g.outputs.fmt_interval(r), g.outputs.fmt_confidence(r)]
        rows.append(row)
    table = FitTable(columns, rows, title=g.outputs.headline(v))
    # Names in these sentences come from the profiles: no markup or escape sequence of theirs.
    console.print(Text(terminal_safe(g.outputs.describe_sides(v), one_line=True)), highlight=False)
    console.print(table)
    # Notes and reasons wrap at word boundaries (they are prose; their paths are short).
    for n in v.notes:
        console.print(Text(f"note: {terminal_safe(n, one_line=True)}"), highlight=False)
    for r in v.failures:
        console.print(Text.assemble(("FAIL", "bold red"), " ", terminal_safe(r.reason, one_line=True)), highlight=False)
    for r in v.improvements:
        console.print(Text.assemble(("improved", "green"), " ", terminal_safe(r.reason, one_line=True)),
                      highlight=False)
