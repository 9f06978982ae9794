"""Records grouped as reports show them: the newest of each case, by model, by shape, and a case's short name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.core.knobs import knob_label
from harness.core.record import INTERRUPTED
from harness.core.spec import RunSpec
from harness.run.gate import case_key


def latest(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest record of each case (what was run, where), in first-seen order; an `interrupted` one only
    where the case has no other (a run stopped by Ctrl-C says nothing of the case)."""
    def order(row: dict[str, Any]) -> tuple[bool, str]:
        return row.get("status") != INTERRUPTED, row.get("utc_time") or ""

    newest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = case_key(row)
        if key not in newest or order(row) >= order(newest[key]):
            newest[key] = row
    return list(newest.values())


def by_model(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["model"], []).append(row)
    return groups


def case_name(row: dict[str, Any]) -> str:
    """`strategy xN`, with the knobs that moved off their defaults in brackets."""
    knobs = knob_label(row)
    return f"{row['strategy']} x{row['nproc']}" + ("" if knobs == "-" else f" [{knobs}]")


def shape(row: dict[str, Any]) -> str:
    """`global batch x seq`: sequences per optimizer step over all ranks, and tokens per sequence; for generation
    `batch x (prompt + new)` over all ranks, with the beams where there are several."""
    batch = row.get("global_batch") or row.get("batch_size")
    if row.get("workload") == "generate":
        beams = f" x {row['num_beams']} beams" if (row.get("num_beams") or 1) > 1 else ""
        return f"{batch}{beams} x ({row.get('prompt_len')} + {row.get('new_tokens')})"
    return f"{batch} x {row.get('seq_len')}"


def by_shape(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by shape, in first-seen order: only rows of one shape compare on memory and throughput."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(shape(row), []).append(row)
    return groups


def knobs_but_dtype(row: dict[str, Any]) -> str:
    """The knobs a row moved off their defaults, precision left out (a column of its own)."""
    return knob_label({**row, "dtype": RunSpec().dtype})
