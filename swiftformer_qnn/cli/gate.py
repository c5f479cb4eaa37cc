"""`gate`: fail CI when the phone got slower (or the compile structure got worse), pass when not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ._app import app, console, err_console, guarded


@app.command()
@guarded
def gate(
    baseline: Annotated[
        list[Path] | None,
        typer.Option("--baseline", "-b", help="Baseline profiles: files or directories of *.profile.json "
                     "(repeatable). With --structure: one compile (a committed structural baseline, an export "
                     "directory or its compile.json, a qnn-versions/qnn-<version>/ directory). With "
                     "--update-baseline: the directory to write (default profiles/baselines/<variant>-<precision>-"
                     "<device>-<source>, or compile-<variant>-<precision>-<soc>-qnn<version> with --structure)."),
    ] = None,
    candidate: Annotated[
        list[Path] | None,
        typer.Option("--candidate", "-c", help="Candidate profiles: files or directories (repeatable). "
                     "With --structure: compiles: export or compile directories, a qnn-versions directory of "
                     "`export --qnn` (one compile per QNN version), compile.json files."),
    ] = None,
    variant: Annotated[
        str | None, typer.Option("--variant", help="Only the profiles (with --structure: the compiles) of this "
                                 "variant (profile writes the standalone encoder block's beside the model's).")
    ] = None,
    structure: Annotated[
        bool, typer.Option("--structure", help="Gate compile structure (no device): HTP op count and context "
                           "binary size of each compile, and that every QNN version compiles.")
    ] = False,
    threshold: Annotated[
        str | None, typer.Option("--threshold", help="Relative change that counts, e.g. 5% or 0.05 "
                                 "(default: pyproject, else 5%). With --structure: the growth allowed to the HTP "
                                 "op count and the context binary.")
    ] = None,
    floor_us: Annotated[
        float | None, typer.Option("--floor-us", min=0, help="Ignore changes smaller than this many "
                                   "microseconds (default: pyproject, else 20).")
    ] = None,
    statistic: Annotated[
        str | None, typer.Option("--statistic", help="Statistic of the runs on each side: median, mean or min "
                                 "(default: pyproject, else median).")
    ] = None,
    confidence: Annotated[
        float | None, typer.Option("--confidence", help="Level of the bootstrap interval that a change must "
                                   "clear (default 0.95).")
    ] = None,
    block_threshold: Annotated[
        list[str] | None, typer.Option("--block-threshold", help="PATTERN=THRESHOLD for matching metrics, "
                                       "e.g. 'stage3.*=10%' or model=3% (repeatable).")
    ] = None,
    block_floor: Annotated[
        list[str] | None, typer.Option("--block-floor", help="PATTERN=MICROSECONDS floor for matching metrics, "
                                       "e.g. head=50 (repeatable).")
    ] = None,
    fail_on_missing: Annotated[
        bool | None, typer.Option("--fail-on-missing/--no-fail-on-missing", help="Fail when a block is present "
                                  "on one side only (default: report it, pass).", show_default=False)
    ] = None,
    allow_mismatch: Annotated[
        bool, typer.Option("--allow-mismatch", help="Compare profiles of different variants, precisions, "
                           "devices, sources or input shapes (or replace such a baseline).")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", help="pyproject.toml to read [tool.swiftformer-qnn.gate] from "
                                  "(default: the nearest one at or above the working directory).")
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Write gate.md, gate.junit.xml and gate.json here.")
    ] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write the Markdown summary here.")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here (one case per metric).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON verdict here.")] = None,
    update_baseline: Annotated[
        bool, typer.Option("--update-baseline", help="Do not gate: write the candidate as the new baseline, "
                           "with its provenance.")
    ] = False,
    note: Annotated[str | None, typer.Option("--note", help="With --update-baseline: why it changed.")] = None,
) -> None:
    """Compare a candidate's latency (whole model and each block) with a baseline's.

    Exit 0 when nothing regressed, 1 when something did, 2 on a usage or input error.
    $GITHUB_STEP_SUMMARY, when set, gets the Markdown summary appended.
    """
    from .. import gate as g

    if not candidate:
        raise UsageError("--candidate is required.", hint="Pass the candidate's profile files or directory.")
    latency_only = {"--floor-us": floor_us, "--statistic": statistic, "--confidence": confidence,
                    "--block-threshold": block_threshold, "--block-floor": block_floor,
                    "--fail-on-missing/--no-fail-on-missing": fail_on_missing}
    if update_baseline:
        _refuse(dict(latency_only, **{"--threshold": threshold, "--config": config, "--report-dir": report_dir,
                                      "--markdown": markdown, "--junit": junit, "--json": json_out}),
                "with --update-baseline (it writes a baseline, it does not gate)")
        _update(g, baseline, candidate, structure=structure, allow_mismatch=allow_mismatch, note=note,
                variant=variant)
        return
    _refuse({"--note": note}, "without --update-baseline")
    if not baseline:
        raise UsageError("--baseline is required.", hint="Pass the baseline's profiles, e.g. --baseline "
                         "profiles/baselines/l1-w8a8-samsung-galaxy-s23-ultra-aihub.")
    if structure:
        # Compile figures have no runs, blocks or noise: the latency rules would be silently unused.
        _refuse(latency_only, "to --structure (it gates compile figures, not latency; --threshold sets its "
                "growth limits)")

    rules, _ = g.load_rules(config)
    fraction = g.parse_fraction(threshold, flag="--threshold") if threshold is not None else None
    rules = g.with_flags(
        rules,
        relative_threshold=None if structure else fraction,
        structure_growth=fraction if structure else None,
        absolute_floor_us=floor_us,
        statistic=statistic.lower().strip() if statistic else None,
        confidence=confidence,
        fail_on_missing=fail_on_missing,
        block_thresholds=g.parse_overrides(block_threshold or [], "relative_threshold", flag="--block-threshold"),
        block_floors=g.parse_overrides(block_floor or [], "absolute_floor_us", flag="--block-floor"),
    )
    if structure:
        verdict = g.gate_manifests(baseline, candidate, rules, allow_mismatch=allow_mismatch, variant=variant)
    else:
        verdict = g.gate_paths(baseline, candidate, rules, allow_mismatch=allow_mismatch, variant=variant)

    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    written = g.write_outputs(verdict, report_dir=report_dir, markdown=markdown, junit=junit, json_path=json_out,
                              step_summary=Path(summary) if summary else None)
    _render(g, verdict)
    for p in written:
        err_console.print(f"wrote {p}", highlight=False)
    if not verdict.passed:
        raise typer.Exit(verdict.exit_code)


def _refuse(flags: dict, why: str) -> None:
    """A flag that would have no effect is an error, not silently ignored (a CI config must do what it says)."""
    given = [flag for flag, value in flags.items() if value not in (None, [], ())]
    if given:
        raise UsageError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply {why}.",
                         hint="Drop it.")


def _update(g, baseline: list[Path] | None, candidate: list[Path], *, structure: bool, allow_mismatch: bool,
            note: str | None, variant: str | None) -> None:
    if baseline and len(baseline) > 1:
        raise UsageError("--update-baseline takes at most one --baseline: the directory to write.")
    dest = baseline[0] if baseline else None
    if structure:
        if len(candidate) != 1:
            raise UsageError("--update-baseline --structure takes one candidate compile.")
        done = g.update_structure_baseline(candidate[0], directory=dest, allow_mismatch=allow_mismatch, note=note,
                                           variant=variant)
    else:
        done = g.update_baseline(candidate, directory=dest, allow_mismatch=allow_mismatch, note=note, variant=variant)
    r = done.record
    what = (f"{r.variant} {r.precision} on {r.device}, source {r.source}, QNN {r.qnn_version}, {r.runs} runs "
            f"in {len(r.files)} profile{'s' * (len(r.files) != 1)}") if r.mode == "profile" \
        else (f"compile structure of {r.variant} {r.precision} for {r.device}, QNN {r.qnn_version}" if r.variant
              else f"compile structure, QNN {r.qnn_version}")
    console.print(f"baseline {'replaced' if done.replaced else 'written'}: {done.directory} ({what})",
                  highlight=False)


def _render(g, v) -> None:
    from rich.table import Table

    style = {"regression": "bold red", "improvement": "green", "within-noise": "yellow",
             "missing-in-candidate": "magenta", "missing-in-baseline": "cyan", "unchanged": "dim"}
    table = Table(title=g.outputs.headline(v), title_justify="left")
    if v.mode == "profile":
        cols = ["metric", f"baseline ({v.baseline.source}, us)", f"candidate ({v.candidate.source}, us)",
                "change", f"{v.rules.confidence * 100:g}% interval", "P(slower)", "status"]
    else:
        cols = ["metric", "baseline", "candidate", "change", "status"]
    for col in cols:
        table.add_column(col, justify="right" if col not in ("metric", "status") else "left")
    for r in v.results:
        row = [r.metric, g.outputs.fmt_value(r.baseline, r.unit), g.outputs.fmt_value(r.candidate, r.unit),
               g.outputs.fmt_change(r)]
        if v.mode == "profile":
            row += [g.outputs.fmt_interval(r), g.outputs.fmt_confidence(r)]
        table.add_row(*row, f"[{style[r.status.value]}]{r.status.value}[/]")
    console.print(g.outputs.describe_sides(v), highlight=False, soft_wrap=True)
    console.print(table)
    for n in v.notes:
        console.print(f"note: {n}", highlight=False, soft_wrap=True)
    for r in v.failures:
        console.print(f"[bold red]FAIL[/] {r.reason}", highlight=False, soft_wrap=True)
    for r in v.improvements:
        console.print(f"[green]improved[/] {r.reason}", highlight=False, soft_wrap=True)
