"""The regression gate's verdicts as a terminal table fitted to the terminal, or as csv/json/markdown
(`spacetime compare`, ci/gate)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from harness.core.units import MIB
from harness.report.columns import Column, Fitted, emit, fields
from harness.report.console import console

_VERDICT_STYLE = {"same": "green", "improved": "cyan", "new": "cyan", "missing": "yellow"}


def _figure(figure: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / MIB:,.2f} MiB" if figure.endswith("bytes") else f"{value:.4f} s"


def _row(change: Any) -> dict[str, Any]:
    """A verdict as a row: figures in bytes or seconds (the figure's name says which), changes as fractions."""
    return {"case": change.case, "figure": change.figure, "baseline": change.baseline,
            "candidate": change.candidate, "relative_change": change.relative,
            "tolerance": None if change.figure == "status" else change.tolerance, "verdict": change.verdict}


COLUMNS = [
    Column("case", "case", lambda r: r["case"], "left", wrap=True),
    Column("figure", "figure", lambda r: r["figure"], "left"),
    Column("baseline", "baseline", lambda r: _figure(r["figure"], r["baseline"]), values=fields("baseline")),
    Column("candidate", "candidate", lambda r: _figure(r["figure"], r["candidate"]), values=fields("candidate")),
    Column("relative_change", "change\n%", lambda r: "-" if r["relative_change"] is None
           else f"{r['relative_change']:+.1%}", values=fields("relative_change")),
    Column("tolerance", "tolerance\n± %", lambda r: "-" if r["tolerance"] is None else f"{r['tolerance']:.1%}",
           drop=1, values=fields("tolerance")),
    Column("verdict", "verdict", lambda r: r["verdict"], "left",
           style=lambda r: _VERDICT_STYLE.get(r["verdict"], "red")),
]


def _title(baseline: str, candidate: str) -> str:
    return f"{candidate[:12]} against baseline {baseline[:12]}"


def changes_table(changes: list[Any], baseline: str, candidate: str, wide: bool = False) -> Fitted:
    """The gate's verdicts, one row per (case, figure), fitted to the console it is printed on."""
    return Fitted(COLUMNS, [_row(c) for c in changes], _title(baseline, candidate), wide)


def print_changes(changes: list[Any], baseline: str, candidate: str, out: Console | None = None,
                  fmt: str = "table", wide: bool = False) -> None:
    """The verdicts as a table fitted to the terminal, or every column as csv, json or markdown on stdout."""
    emit(COLUMNS, [_row(c) for c in changes], out or console(), _title(baseline, candidate), fmt, wide)
