"""Tables of the knob presets: `levers` (what each lever saves and costs, row to row) and `lora-ranks`
(peak memory with the LoRA rank across and the batch size down)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from harness.core.knobs import knob_label
from harness.report.tables import MIB


def _delta(now: float | None, before: float | None) -> str:
    if now is None or before in (None, 0):
        return "-"
    return f"{now / before - 1:+.1%}"  # type: ignore[operator]


def _lever(row: dict[str, Any]) -> str:
    label = knob_label(row)
    return f"none ({row.get('dtype', 'fp32')}, full fine-tuning, AdamW)" if label == "-" else label


def levers_table(rows: list[dict[str, Any]], title: str | None = None) -> Table:
    """One row per lever, in order; each change is against the row before."""
    table = Table(title=title, header_style="bold")
    for name in ("#", "model", "knobs", "status", "peak MiB", "peak change", "tokens/s", "tokens/s change",
                 "trainable params", "loss"):
        table.add_column(name, justify="left" if name in ("model", "knobs", "status") else "right")
    before: dict[str, Any] = {}
    for i, row in enumerate(rows, 1):
        ok = row["status"] == "ok"
        peak, speed = row.get("peak_bytes"), row.get("tokens_per_s")
        table.add_row(
            str(i), row["model"], _lever(row), row["status"],
            "-" if peak is None else f"{peak / MIB:,.1f}", _delta(peak, before.get("peak_bytes")),
            "-" if speed is None else f"{speed:,.0f}", _delta(speed, before.get("tokens_per_s")),
            "-" if row.get("trainable_params") is None else f"{row['trainable_params']:,}",
            "-" if row.get("loss") is None else f"{row['loss']:.4f}")
        if ok:
            before = row
    return table


def lora_ranks_table(rows: list[dict[str, Any]], title: str | None = None) -> Table:
    """Peak MiB by batch size (down) and LoRA rank (across); a cell that did not run says why."""
    ranks = sorted({r["lora_rank"] for r in rows})
    batches = sorted({r["batch_size"] for r in rows})
    model = ", ".join(sorted({r["model"] for r in rows}))
    table = Table(title=title or f"peak MiB, {model}", header_style="bold")
    table.add_column("batch \\ rank", justify="right")
    for rank in ranks:
        table.add_column(f"r={rank}", justify="right")
    cells = {(r["batch_size"], r["lora_rank"]): r for r in rows}
    for batch in batches:
        line = []
        for rank in ranks:
            row = cells.get((batch, rank))
            if row is None:
                line.append("")
            elif row["status"] != "ok":
                line.append(row["status"])
            else:
                line.append(f"{row['peak_bytes'] / MIB:,.1f}")
        table.add_row(str(batch), *line)
    return table


TABLES = {"levers": levers_table, "lora-ranks": lora_ranks_table}
