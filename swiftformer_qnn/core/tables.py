"""Terminal tables that fit the console's width: every table the CLI prints is rendered through
`FitTable`.

The layout is chosen when rich renders the table, at the width it has: the table as is; then
short headers (wrapped at spaces); then long names shortened in the middle and free text wrapped;
and at last the table split into several, each repeating the key column. Keys (block names,
versions, metrics), numbers and labels are never cut or wrapped, so a narrow terminal shows fewer
columns side by side, never part of a number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .text import terminal_safe

# key: names the row; never cut, repeated in every part of a split table (without a key column,
#   the first column is repeated).
# number, label: never cut or wrapped (a figure, a status word, a version).
# name: an identifier; shortened in the middle when space is short ("/stage2/blo…to_query/MatMul").
# text: free text; wrapped at spaces.
Kind = Literal["key", "number", "label", "name", "text"]
ELLIPSIS = "…"


@dataclass(frozen=True)
class Col:
    header: str
    kind: Kind = "text"
    short: str | None = None  # the header when the full one does not fit
    min_width: int = 12  # how narrow a name or text column may get

    @property
    def fixed(self) -> bool:
        return self.kind in ("key", "number", "label")


def fmt_bytes(n: int | None) -> str:
    """A size in B, KB, MB or GB (1024-based), one decimal above bytes."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` cells, its middle replaced by an ellipsis (both ends are what
    tell names apart: the module path's start and the op at its end)."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    keep = width - 1
    head = text[: (keep + 1) // 2]
    tail = text[len(text) - keep // 2 :] if keep // 2 else ""
    return head + ELLIPSIS + tail


def _width(text: Text | str) -> int:
    plain = text.plain if isinstance(text, Text) else text
    return max((cell_len(line) for line in plain.split("\n")), default=0)


def _longest_word(text: str) -> int:
    return max((cell_len(w) for w in text.split()), default=0)


def _overhead(n_columns: int) -> int:
    # rich's default box with edges: n + 1 rules, and one space of padding each side of a cell.
    return 3 * n_columns + 1


class FitTable:
    """A table that lays itself out for the width it is rendered at (see the module docstring)."""

    def __init__(
        self,
        columns: Sequence[Col],
        rows: Iterable[Sequence[Text | str]],
        *,
        title: str | Text | None = None,
        caption: str | None = None,
    ):
        self.columns = list(columns)
        n = len(self.columns)
        self.rows: list[list[Text]] = []
        for row in rows:
            # A cell's text may be a device's or an op's name from a file: no escape sequence of its own.
            cells = [c if isinstance(c, Text) else Text(terminal_safe(str(c), one_line=True)) for c in row]
            self.rows.append(cells + [Text("")] * (n - len(cells)))
        self.title = title
        self.caption = caption
        self._cells = [max((_width(r[i]) for r in self.rows), default=0) for i in range(n)]

    # -------------------------------------------------------------------------- widths

    def _natural(self, i: int) -> int:
        return max(self._cells[i], _width(self.columns[i].header))

    def _header(self, i: int, short: bool) -> str:
        c = self.columns[i]
        return (c.short or c.header) if short else c.header

    def _least(self, i: int) -> int:
        """The narrowest column i may get: fixed columns their cells, others min_width; never
        narrower than the longest word of its (short) header."""
        c = self.columns[i]
        header = _longest_word(self._header(i, True))
        if c.fixed:
            return max(self._cells[i], header)
        return max(min(self._cells[i], c.min_width), header, 1)

    def _compact(self, i: int) -> int:
        return max(self._cells[i], _longest_word(self._header(i, True)))

    def natural_width(self) -> int:
        return sum(self._natural(i) for i in range(len(self.columns))) + _overhead(len(self.columns))

    def fits(self, width: int) -> bool:
        """Whether the table fits `width` without splitting it."""
        return self._layout(range(len(self.columns)), width) is not None

    def _layout(self, cols: Sequence[int], width: int, *, short: bool = False) -> tuple[dict[int, int], bool] | None:
        """Column widths for `cols` within `width` (and whether to use the short headers), or None."""
        budget = width - _overhead(len(cols))
        if not short and sum(self._natural(i) for i in cols) <= budget:
            return {i: self._natural(i) for i in cols}, False
        if sum(self._compact(i) for i in cols) <= budget:
            return {i: self._compact(i) for i in cols}, True
        widths = {i: self._least(i) for i in cols}
        spare = budget - sum(widths.values())
        if spare < 0:
            return None
        # Give the spare cells to the shortened columns, one at a time to the most shortened.
        flexible = [i for i in cols if not self.columns[i].fixed]
        while spare > 0:
            short_of = [(self._compact(i) - widths[i], i) for i in flexible if widths[i] < self._compact(i)]
            if not short_of:
                break
            _, i = max(short_of)
            widths[i] += 1
            spare -= 1
        return widths, True

    def _parts(self, width: int) -> list[tuple[list[int], dict[int, int], bool]]:
        everything = list(range(len(self.columns)))
        whole = self._layout(everything, width)
        if whole is not None:
            return [(everything, *whole)]
        keys = self._keys()
        parts: list[list[int]] = []
        current: list[int] = []
        for i in everything:
            if i in keys:
                continue
            if current and self._layout(sorted(keys + current + [i]), width, short=True) is None:
                parts.append(current)
                current = []
            current.append(i)
        if current:
            parts.append(current)
        out = []
        for part in parts:
            cols = sorted(keys + part)
            # A part that fits nowhere (a terminal narrower than key + one column) gets its least widths.
            # The parts of a split table all use the short headers, so they read as one table.
            out.append((cols, *(self._layout(cols, width, short=True) or ({i: self._least(i) for i in cols}, True))))
        return out

    # -------------------------------------------------------------------------- rendering

    def _keys(self) -> list[int]:
        """The columns every part of a split table repeats: the key columns, else the first."""
        return [i for i, c in enumerate(self.columns) if c.kind == "key"] or [0]

    def _table(
        self, cols: list[int], widths: dict[int, int], short: bool, *, first: bool, last: bool, whole: bool
    ) -> Table:
        table = Table(
            title=self.title if first else None,
            caption=self.caption if last else None,
            title_justify="left",
            caption_justify="left",
        )
        for i in cols:
            c = self.columns[i]
            table.add_column(
                Text(self._header(i, short)),
                justify="right" if c.kind == "number" else "left",
                width=widths[i],  # at least as wide as every fixed cell, so those never wrap
                overflow="fold",
            )
        keys = self._keys()
        for row in self.rows:
            if not whole and all(not row[i].plain.strip() for i in cols if i not in keys):
                continue  # a part of a split table leaves out the rows it has nothing for
            cells = []
            for i in cols:
                cell = row[i]
                if self.columns[i].kind == "name" and _width(cell) > widths[i]:
                    cell = Text(shorten_middle(cell.plain, widths[i]), style=cell.style)
                cells.append(cell)
            table.add_row(*cells)
        return table

    def tables(self, width: int) -> list[Table]:
        parts = self._parts(width)
        return [
            self._table(cols, widths, short, first=k == 0, last=k == len(parts) - 1, whole=len(parts) == 1)
            for k, (cols, widths, short) in enumerate(parts)
        ]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.tables(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        least = sum(self._least(i) for i in range(len(self.columns))) + _overhead(len(self.columns))
        return Measurement(min(least, options.max_width), min(self.natural_width(), options.max_width))
