"""The records table's columns for pipeline runs: each stage's peak (the ranks differ by the blocks they hold)
and the measured bubble beside the schedule's theoretical one.  They appear only where a row is a pipeline
record, so other tables keep their width."""

from __future__ import annotations

from typing import Any

from harness.core.units import MIB
from harness.report.columns import Column, fields


def _stage_peaks(row: dict[str, Any]) -> str:
    """Every rank's peak in MiB, in rank order (ranks pp_rank x dp x tp + ...: the first dp x tp ranks hold the
    first stage), where the row is a pipeline; else `-`."""
    peaks = row.get("peak_bytes_per_rank")
    if (row.get("mesh_pp") or 1) <= 1 or not peaks:
        return "-"
    return " ".join("-" if p is None else f"{p / MIB:,.0f}" for p in peaks)


def _bubble(row: dict[str, Any]) -> str:
    measured, theory = row.get("bubble_fraction"), row.get("bubble_theory")
    if measured is None:
        return "-"
    return f"{measured:.0%}" + ("" if theory is None else f" ({theory:.0%})")


def pipeline_columns(rows: list[dict[str, Any]]) -> list[Column]:
    """Stage peaks and bubble, where any row is a pipeline run; else none."""
    if not any((r.get("mesh_pp") or 1) > 1 for r in rows):
        return []
    return [
        Column("stage_peaks_mib", "peak MiB\nper rank", _stage_peaks, "left", drop=5,
               values=fields("mesh_pp")),
        Column("bubble", "bubble\n(theory)", _bubble, drop=4,
               values=fields("bubble_fraction", "bubble_fraction_per_rank", "bubble_theory")),
    ]
