"""`cache`: what the stage cache and the QNN toolchains take on disk; `cache clean` empties them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from ..core.tables import Col, FitTable, fmt_bytes
from ._app import app, console, guarded, next_step

cache_app = typer.Typer(
    invoke_without_command=True,
    help="Disk used by the stage cache and the QNN toolchains; `cache clean` empties the stage cache.",
)
app.add_typer(cache_app, name="cache")


@cache_app.callback()
@guarded
def cache(ctx: typer.Context) -> None:
    """Show what the stage cache, crash logs, QNN toolchains and AI Hub job journals take on disk."""
    if ctx.invoked_subcommand is not None:
        return
    from ..pipeline.disk import usage

    areas = usage()
    rows = [[a.what, fmt_bytes(a.bytes), str(a.entries) if a.entries else "-"] for a in areas]
    console.print(FitTable([Col("what", "key"), Col("size", "number"), Col("entries", "number")], rows,
                           title=f"swiftformer-qnn on disk (total {fmt_bytes(sum(a.bytes for a in areas))})"))
    for a in areas:  # each path on a line of its own: copied whole, never folded
        console.print(Text(f"  {a.what}:"), highlight=False)
        console.print(Text(f"    {a.path}"), soft_wrap=True, highlight=False)
    console.print("Output folders (build/...) are yours: they are not in the cache and no clean touches them.")
    next_step(console, "swiftformer-qnn cache clean",
              why="empty the stage cache and crash logs (--toolchains: the toolchains too)")


@cache_app.command("clean")
@guarded
def clean_cmd(
    toolchains: Annotated[bool, typer.Option("--toolchains", help="Also remove the installed QNN toolchains "
                                             "(not the main environment's own QNN) and their downloads.")] = False,
) -> None:
    """Empty the stage cache and crash logs; never an output folder, never the AI Hub job journals."""
    from ..pipeline.disk import clean

    done = clean(toolchains=toolchains)
    freed = sum(c.bytes for c in done)
    entries = sum(c.what == "stage cache entry" for c in done)
    console.print(f"Removed {entries} stage cache entr{'y' if entries == 1 else 'ies'} and {len(done) - entries} "
                  f"other item(s): {fmt_bytes(freed)} freed.", highlight=False)
    for c in done:
        if c.what != "stage cache entry":
            console.print(Text(f"  {c.what}:"), highlight=False)
            console.print(Text(f"    {c.path}"), soft_wrap=True, highlight=False)
    next_step(console, "swiftformer-qnn export --variant l1", why="the next export runs every stage again")
