"""Terminal tables that fit the terminal, and the same rows as csv, json or markdown.

A table is a list of Columns.  By default it is fitted to the console's width: a column that holds the same text
on every row moves into the title, an optional column that says nothing (`-` throughout) is left out, text that
may wrap (knobs, a case's name) wraps between words, and then optional columns are left out, least important
first, until the table fits; a note under it names what was left out.  Values that identify a row (strategy
names, losses, ranks) are never cut or wrapped.  `wide` shows every column at its natural width; the machine
formats give every column's raw figures (the record's own fields, units in their names) on stdout.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

Row = dict[str, Any]
FORMATS = ("table", "csv", "json", "markdown")
COMPACT, WIDE, MACHINE = 0, 1, 2  # the least detailed view a column appears in


@dataclass(frozen=True)
class Column:
    """One column. `header` carries the unit and may be split over lines with `\\n`; `drop` > 0 marks a column
    the compact view may leave out (the highest first), or replace by `narrow` where it has one; `fold` lets a
    column that is the same on every row move into the title; `values` gives the raw fields for csv/json
    (default: `key` -> the text)."""

    key: str
    header: str
    text: Callable[[Row], str]
    justify: Literal["left", "right"] = "right"
    drop: int = 0
    wrap: bool = False
    fold: bool = False
    view: int = COMPACT
    values: Callable[[Row], dict[str, Any]] | None = None
    style: Callable[[Row], str | None] | None = None
    narrow: Column | None = None
    usual: str = "-"  # a folded value not worth saying in the title

    def raw(self, row: Row) -> dict[str, Any]:
        return self.values(row) if self.values else {self.key: self.text(row)}

    def label(self) -> str:
        return " ".join(self.header.split())


def fields(*names: str) -> Callable[[Row], dict[str, Any]]:
    """`values` that are the record's own fields, unchanged."""
    return lambda row: {name: row.get(name) for name in names}


def natural_width(renderable: Any) -> int:
    """The width `renderable` takes when nothing squeezes it."""
    console = Console(width=100_000)
    return Measurement.get(console, console.options, renderable).maximum


def _longest_word(texts: Sequence[str]) -> int:
    return max((len(word) for text in texts for word in text.split()), default=1)


def _lines(col: Column, rows: list[Row]) -> list[str]:
    return [line for text in [*(col.text(r) for r in rows), col.header] for line in text.splitlines()]


def compact_table(title: str | None = None) -> Table:
    """A rich Table in the style of every table here: a rule under the header, two spaces between columns."""
    return Table(title=None if title is None else Text(title), header_style="bold", box=box.SIMPLE_HEAD,
                 show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), title_justify="left")


def _table(columns: list[Column], rows: list[Row], title: str | None, caps: dict[str, int]) -> Table:
    table = compact_table(title)
    for col in columns:
        cap = caps.get(col.key)
        table.add_column(Text(col.header), justify=col.justify, no_wrap=cap is None, max_width=cap,
                         min_width=None if cap is None else _longest_word(_lines(col, rows)), overflow="fold")
    for row in rows:
        table.add_row(*(Text(c.text(row), style=(c.style(row) if c.style else None) or "") for c in columns))
    return table


def _shrunk(columns: list[Column], rows: list[Row], title: str | None, width: int) -> tuple[Table, int]:
    """The table with its wrapping columns narrowed (between words) as far as `width` needs; and its width."""
    caps: dict[str, int] = {}
    table = _table(columns, rows, title, caps)
    over = natural_width(table) - width
    for col in sorted((c for c in columns if c.wrap), key=lambda c: -max(map(len, _lines(c, rows)))):
        if over <= 0:
            break
        lines = _lines(col, rows)
        caps[col.key] = max(_longest_word(lines), max(map(len, lines)) - over)
        table = _table(columns, rows, title, caps)
        over = natural_width(table) - width
    return table, width + over


def _folded(columns: list[Column], rows: list[Row]) -> tuple[list[Column], list[str]]:
    """Columns that stay, and `header value` for each foldable column that is the same on every row."""
    kept, said = [], []
    for col in columns:
        texts = {col.text(r) for r in rows}
        if col.fold and len(rows) > 1 and len(texts) == 1:
            value = texts.pop()
            if value not in ("-", col.usual):
                said.append(f"{col.label()} {value}")
        elif col.drop and texts == {"-"}:
            continue  # an optional column with nothing in it
        else:
            kept.append(col)
    return kept, said


def fitted(columns: Sequence[Column], rows: list[Row], title: str | None, width: int,
           wide: bool = False) -> tuple[Table, list[str]]:
    """The table for `width` columns (or every column, `wide`), and the headers of the columns left out."""
    shown = [c for c in columns if c.view <= (WIDE if wide else COMPACT)]
    if wide:
        return _table(shown, rows, title, {}), []
    shown, said = _folded(shown, rows)
    title = ": ".join(t for t in (title, ", ".join(said)) if t) or None
    left_out: list[str] = []
    while True:
        table, needs = _shrunk(shown, rows, title, width)
        optional = [c for c in shown if c.drop]
        if needs <= width or not optional:
            return table, left_out
        gone = max(optional, key=lambda c: c.drop)
        if gone.narrow is not None:
            shown[shown.index(gone)] = gone.narrow
        else:
            shown.remove(gone)
            left_out.append(gone.label())


class Fitted:
    """A table that fits the console it is printed on (rich calls it with that console's width): the fitted table
    and, under it, a note naming the columns left out.  `wide`: every column, at the width the console has."""

    def __init__(self, columns: Sequence[Column], rows: list[Row], title: str | None = None, wide: bool = False):
        self.columns, self.rows, self.title, self.wide = columns, rows, title, wide

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table, left_out = fitted(self.columns, self.rows, self.title, options.max_width, self.wide)
        yield table
        if left_out:
            yield Text(f"(--wide adds {', '.join(left_out)})", style="dim")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        table = fitted(self.columns, self.rows, self.title, options.max_width, self.wide)[0]
        return Measurement.get(console, options, table)


def machine(columns: Sequence[Column], rows: list[Row], fmt: str) -> str:
    """Every column of `rows` as csv or json (raw fields) or markdown (the wide table's text)."""
    if fmt == "markdown":
        shown = [c for c in columns if c.view <= WIDE]
        lines = ["| " + " | ".join(c.label() for c in shown) + " |",
                 "|" + "|".join("---:" if c.justify == "right" else "---" for c in shown) + "|"]
        lines += ["| " + " | ".join(c.text(r).replace("|", "\\|") for c in shown) + " |" for r in rows]
        return "\n".join(lines)
    records = [{k: v for c in columns for k, v in c.raw(r).items()} for r in rows]
    if fmt == "json":
        return json.dumps(records, default=str)
    buffer = io.StringIO()
    names = list(dict.fromkeys(k for record in records for k in record)) or [c.key for c in columns]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in record.items()})
    return buffer.getvalue().rstrip("\n")


def emit(columns: Sequence[Column], rows: list[Row], out: Console, title: str | None = None, fmt: str = "table",
         wide: bool = False) -> None:
    """Print the rows: a table fitted to `out` (or every column, `wide`), or csv/json/markdown on stdout."""
    if fmt != "table":
        print(machine(columns, rows, fmt))
        return
    table = Fitted(columns, rows, title, wide)
    if not wide:
        out.print(table)
        return
    before = out.width  # as wide as the table needs: a line longer than the terminal wraps there, uncut
    out.width = max(before, natural_width(fitted(columns, rows, title, before, wide)[0]))
    try:
        out.print(table)
    finally:
        out.width = before
