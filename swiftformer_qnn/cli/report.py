"""`report`: tables and charts across QNN versions, or `--compare A B` for two profiles or two compiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import UsageError
from ._app import JsonOpt, app, console, err_console, guarded, next_step, print_json


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
    json_: JsonOpt = False,
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
        if json_:
            print_json({"out_dir": str(result.out_dir), "files": [str(result.out_dir / f) for f in ("compare.md", "compare.json")],
                        "comparison": cmp.model_dump(mode="json")})
            return
        console.print(structure_renderable(cmp) if isinstance(cmp, StructureComparison) else comparison_renderable(cmp))
        _wrote(result.out_dir, ["compare.md", "compare.json"])
        next_step(console, f"less {result.out_dir / 'compare.md'}", why="the comparison, biggest change first")
        return

    result = make_report(paths or [], out=out, name=name, skip_invalid=skip_invalid)
    for s in result.report.skipped:
        err_console.print(Text.assemble(("skipped: ", "yellow"), s.reason), highlight=False)
    files = ["report.html", "report.md", "report.json", *(c.filename for c in result.charts)]
    if json_:
        print_json({"out_dir": str(result.out_dir), "files": [str(result.out_dir / f) for f in files],
                    "report": result.report.model_dump(mode="json")})
        return
    console.print(report_renderable(result.report))
    _wrote(result.out_dir, files)
    next_step(console, f"xdg-open {result.out_dir / 'report.html'}",
              why="the report with its charts, in a browser (report.md: the same tables in Markdown)")


def _wrote(directory: Path, files: list[str]) -> None:
    """The files written, each on a line of its own (a path is never folded)."""
    console.print(Text.assemble("Wrote ", (f"{directory}/", "bold"), ":"), soft_wrap=True)
    for name in files:
        console.print(Text("  " + name), soft_wrap=True)
