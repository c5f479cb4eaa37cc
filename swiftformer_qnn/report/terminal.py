"""rich renderables of the same table specs (the CLI prints them; nothing here prints)."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .model import Comparison, Report
from .tables import TableSpec, comparison_tables, headline_table, headline_table_by_column

TERMINAL_BLOCKS = 12  # per-block deltas shown in the terminal; compare.md has them all


def table_rich(spec: TableSpec) -> Table:
    table = Table(title=spec.title, caption=spec.caption, caption_justify="left")
    for i, h in enumerate(spec.headers):
        # fold, not ellipsis: a narrow terminal may wrap a number, never hide part of it.
        table.add_column(
            Text("\n".join(h)), justify="right" if i >= spec.numeric_from else "left", overflow="fold"
        )
    for row in spec.rows:
        # Text(): op names and footnote marks like "[1]" are not rich markup.
        table.add_row(*(Text(c) for c in row))
    return table


class HeadlineTable:
    """The headline table as in report.md; turned on its side when the terminal is too narrow for it."""

    def __init__(self, report: Report):
        self.wide = table_rich(headline_table(report))
        self.tall = table_rich(headline_table_by_column(report))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Natural width, measured without the limit (within it every table "fits" by wrapping).
        natural = Measurement.get(console, options.update_width(10_000), self.wide).maximum
        yield self.wide if natural <= options.max_width or len(self.wide.columns) <= 4 else self.tall


def report_renderable(report: Report) -> HeadlineTable:
    """The headline table; the rest is in report.md / report.html."""
    return HeadlineTable(report)


def comparison_renderable(cmp: Comparison) -> Group:
    items: list = [table_rich(t) for t in comparison_tables(cmp, limit=TERMINAL_BLOCKS)]
    items += [Text(f"note: {n}", style="dim") for n in cmp.notes]
    return Group(*items)
