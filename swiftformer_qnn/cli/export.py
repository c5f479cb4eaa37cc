"""`export`, `compile` and `variants` commands (filled in by the pipeline work)."""

from __future__ import annotations

from ._app import app, console, guarded
from ..variants import VARIANTS


@app.command()
@guarded
def variants() -> None:
    """List the variants with their published parameters, MACs and accuracy."""
    from rich.table import Table

    table = Table(title="SwiftFormer variants")
    for col in ("variant", "model", "params (M)", "GMACs", "top-1 %", "input"):
        table.add_column(col)
    for v in VARIANTS.values():
        table.add_row(
            v.name,
            v.title,
            f"{v.published_params_m}" if v.published_params_m else "-",
            f"{v.published_gmacs}" if v.published_gmacs else "-",
            f"{v.published_top1}" if v.published_top1 else "-",
            "x".join(map(str, v.input_shape())),
        )
    console.print(table)
