"""`diagnose`: per-block fidelity of an export, fp32 -> CPU QDQ -> HTP emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import UsageError
from ._app import app, console, err_console, guarded, next_step


@app.command()
@guarded
def diagnose(
    export_dir: Annotated[Path, typer.Argument(help="An export directory (quantized: w8a8, w8a16 or mixed; --until quantize or later).")],
    out: Annotated[Path | None, typer.Option(help="Where to write diagnose.json and diagnose.md. Default: EXPORT_DIR/diagnose/.")] = None,
) -> None:
    """Per-block SQNR of an export (fp32 -> CPU QDQ -> HTP emulator) and the op where the HTP departs from it.

    Runs one held-out input with every quantized tensor as an output; writes JSON and Markdown."""
    from ..core.tables import table_rich
    from ..pipeline.diagnose import diagnose_export
    from ..pipeline.localize import describe
    from ..report.diagnosis import diagnosis_table, write_diagnosis

    target = out or Path(export_dir) / "diagnose"
    if target.exists() and not target.is_dir():  # before the work, not after it
        raise UsageError(f"{target} is a file, not a directory for diagnose.json and diagnose.md.",
                         hint="Pass --out a directory (the default is EXPORT_DIR/diagnose).")
    d = diagnose_export(export_dir, running=lambda: err_console.print(
        "Running the QDQ model on the CPU and the HTP emulator with every quantized tensor as an output ..."))
    js, md = write_diagnosis(d, target)
    console.print(table_rich(diagnosis_table(d)))
    console.print(Text(f"HTP vs CPU QDQ: {describe(d.divergence)}."))
    console.print(Text("Wrote:"))
    for path in (md, js):
        console.print(Text(f"  {path}"), soft_wrap=True)
    next_step(console, f"less {md}", why="the per-block table and the op where the HTP departs, in Markdown")
