"""The regression gate's verdicts as a terminal table (`spacetime compare`, ci/gate)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from harness.core.units import MIB

_VERDICT_STYLE = {"same": "green", "improved": "cyan", "new": "cyan", "missing": "yellow"}


def _figure(figure: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / MIB:,.2f} MiB" if figure.endswith("bytes") else f"{value:.4f} s"


def changes_table(changes: list[Any], baseline: str, candidate: str) -> Table:
    """The gate's verdicts: one row per (case, figure)."""
    table = Table(title=f"{candidate[:12]} against baseline {baseline[:12]}", header_style="bold")
    for name, justify in [("case", "left"), ("figure", "left"), ("baseline", "right"), ("candidate", "right"),
                          ("change", "right"), ("tolerance", "right"), ("verdict", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in changes:
        style = _VERDICT_STYLE.get(c.verdict, "red")
        change = "-" if c.relative is None else f"{c.relative:+.1%}"
        tol = "-" if c.figure == "status" else f"±{c.tolerance:.1%}"
        table.add_row(c.case, c.figure, _figure(c.figure, c.baseline), _figure(c.figure, c.candidate), change,
                      tol, f"[{style}]{c.verdict}[/{style}]")
    return table
