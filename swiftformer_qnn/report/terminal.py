"""rich renderables of the same table specs (the CLI prints them; nothing here prints)."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.text import Text

from ..core.tables import table_rich
from .model import Comparison, Report, StructureComparison
from .tables import comparison_tables, headline_table, headline_table_by_column, structure_tables

TERMINAL_BLOCKS = 12  # per-block deltas shown in the terminal; compare.md has them all


class HeadlineTable:
    """The headline table as in report.md; turned on its side when the terminal is too narrow for it."""

    def __init__(self, report: Report):
        self.wide = table_rich(headline_table(report))
        self.tall = table_rich(headline_table_by_column(report))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.wide if self.wide.fits(options.max_width) or len(self.wide.columns) <= 4 else self.tall


def report_renderable(report: Report) -> HeadlineTable:
    """The headline table; the rest is in report.md / report.html."""
    return HeadlineTable(report)


def comparison_renderable(cmp: Comparison) -> Group:
    items: list = [table_rich(t) for t in comparison_tables(cmp, limit=TERMINAL_BLOCKS)]
    items += [Text(f"note: {n}", style="dim") for n in cmp.notes]
    return Group(*items)


def structure_renderable(cmp: StructureComparison) -> Group:
    items: list = [table_rich(t) for t in structure_tables(cmp)]
    items += [Text(f"note: {n}", style="dim") for n in cmp.notes]
    return Group(*items)
