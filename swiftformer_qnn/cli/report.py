"""`report`: tables and charts across QNN versions, or `--compare A B` for two profiles or two compiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..core.errors import UsageError
from ._app import app, console, err_console, guarded


@app.command()
@guarded
def report(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="PROFILE_OR_DIR",
            help="Profile files (*.profile.json) or directories searched for them, e.g. profiles/reference.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the report here instead of build/reports/<name>/.", show_default=False
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Directory name under build/reports/ (default: from the inputs).",
            show_default=False,
        ),
    ] = None,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            "--compare",
            metavar="A B",
            help="Compare two profiles of the same model (per-block deltas of B against A, biggest first), "
            "or two compiles: export directories or compile.json (HTP ops by type, layout ops, float islands, "
            "context binary size).",
            show_default=False,
        ),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Leave out malformed or foreign files (listed in the report) instead of stopping.",
        ),
    ] = False,
) -> None:
    """Report latency across QNN versions: headline table, per-block breakdown, movers, charts."""
    from ..report import make_comparison, make_report
    from ..report.model import StructureComparison
    from ..report.terminal import comparison_renderable, report_renderable, structure_renderable

    if compare is not None:
        if paths:
            raise UsageError("--compare takes exactly two profiles or compiles; give no other paths with it.")
        result = make_comparison(compare[0], compare[1], out=out, name=name)
        cmp = result.comparison
        console.print(structure_renderable(cmp) if isinstance(cmp, StructureComparison) else comparison_renderable(cmp))
        console.print(f"wrote {result.out_dir}/ (compare.md, compare.json)", highlight=False)
        return

    result = make_report(paths or [], out=out, name=name, skip_invalid=skip_invalid)
    for s in result.report.skipped:
        err_console.print(f"[yellow]skipped:[/] {escape(s.reason)}", highlight=False, soft_wrap=True)
    console.print(report_renderable(result.report))
    charts = ", ".join(c.filename for c in result.charts)
    console.print(
        f"wrote {result.out_dir}/ (report.md, report.json, report.html; charts: {charts})", highlight=False
    )
