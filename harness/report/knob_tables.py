"""Tables of the knob presets, fitted to the terminal: `levers` (what each lever saves and costs, row to row) and
`lora-ranks` (peak memory with the LoRA rank across and the batch size down)."""

from __future__ import annotations

from typing import Any

from harness.core.knobs import knob_label
from harness.core.units import MIB
from harness.report.columns import Column, Fitted
from harness.report.generation_tables import GENERATION_TABLES


def _delta(now: float | None, before: float | None) -> str:
    if now is None or before in (None, 0):
        return "-"
    return f"{now / before - 1:+.1%}"  # type: ignore[operator]


def _lever(row: dict[str, Any]) -> str:
    label = knob_label(row)
    return f"none ({row.get('dtype', 'fp32')}, full fine-tuning, AdamW)" if label == "-" else label


def _number(value: float | None, spec: str, scale: float | None = None) -> str:
    return "-" if value is None else format(value / scale if scale else value, spec)


LEVER_COLUMNS = [
    Column("n", "#", lambda r: str(r["n"])),
    Column("model", "model", lambda r: str(r["model"]), "left", fold=True),
    Column("knobs", "knobs", _lever, "left", wrap=True),
    Column("status", "status", lambda r: str(r["status"]), "left"),
    Column("peak_mib", "peak\nMiB", lambda r: _number(r.get("peak_bytes"), ",.1f", MIB)),
    Column("peak_change", "peak\nchange %", lambda r: _delta(r.get("peak_bytes"), r["before"].get("peak_bytes"))),
    Column("tokens_per_s", "tokens/s", lambda r: _number(r.get("tokens_per_s"), ",.0f"), drop=2),
    Column("tokens_per_s_change", "tokens/s\nchange %",
           lambda r: _delta(r.get("tokens_per_s"), r["before"].get("tokens_per_s"))),
    Column("trainable_params", "trainable\nparams", lambda r: _number(r.get("trainable_params"), ","), drop=1),
    Column("loss", "loss", lambda r: _number(r.get("loss"), ".4f")),
]


def levers_table(rows: list[dict[str, Any]], title: str | None = None, wide: bool = False) -> Fitted:
    """One row per lever, in order; each change is against the row before that ran."""
    numbered: list[dict[str, Any]] = []
    before: dict[str, Any] = {}
    for i, row in enumerate(rows, 1):
        numbered.append({**row, "n": i, "before": before})
        if row["status"] == "ok":
            before = row
    return Fitted(LEVER_COLUMNS, numbered, title, wide)


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    return row["status"] if row["status"] != "ok" else f"{row['peak_bytes'] / MIB:,.1f}"


def _rank_column(key: str) -> Column:
    return Column(key, key, lambda r: str(r[key]))


def lora_ranks_table(rows: list[dict[str, Any]], title: str | None = None, wide: bool = False) -> Fitted:
    """Peak MiB by batch size (down) and LoRA rank (across); a cell that did not run says why."""
    ranks = sorted({r["lora_rank"] for r in rows})
    batches = sorted({r["batch_size"] for r in rows})
    model = ", ".join(sorted({r["model"] for r in rows}))
    cells = {(r["batch_size"], r["lora_rank"]): r for r in rows}
    grid = [{"batch": b, **{f"r={rank}": _cell(cells.get((b, rank))) for rank in ranks}} for b in batches]
    columns = [Column("batch", "batch \\ rank", lambda r: str(r["batch"]))]
    columns += [_rank_column(f"r={rank}") for rank in ranks]
    return Fitted(columns, grid, title or f"peak MiB, {model}", wide)


TABLES = {"levers": levers_table, "lora-ranks": lora_ranks_table, **GENERATION_TABLES}
