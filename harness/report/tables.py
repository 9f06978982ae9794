"""Records as a terminal table (rich): one row per record, failures' last lines under it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.core.knobs import knob_label
from harness.core.units import MIB
from harness.report.console import console
from harness.run.annotate import ERROR_COLUMNS, relative_error

_STATUS_STYLE = {"ok": "green", "unsupported": "yellow"}


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:,.1f}"


def _step(row: dict[str, Any]) -> str:
    if row.get("step_s_p50") is None:
        return "-"
    return f"{row['step_s_p50']:.3f} [{row['step_s_p10']:.3f}-{row['step_s_p90']:.3f}]"


def _layout(row: dict[str, Any]) -> str:
    hosts = f" on {row['nnodes']} hosts" if (row.get("nnodes") or 1) > 1 else ""
    if row.get("mesh_tp") is None:
        return str(row.get("world_size", "-")) + hosts
    dp = f"{row['mesh_dp_replicate']}x{row['mesh_dp_shard']}" if row["mesh_dp_replicate"] > 1 else str(
        row["mesh_dp_shard"])
    return f"{row['world_size']}{hosts} (dp {dp}, tp {row['mesh_tp']})"


def _beside(row: dict[str, Any], kind: str) -> str:
    """A predicted or simulated peak in MiB with its error against the measured one."""
    value = row.get(ERROR_COLUMNS[kind])
    if value is None:
        return "-"
    error = relative_error(row, kind)
    return _mib(value) + ("" if error is None else f" ({error:+.1%})")


def records_table(rows: Iterable[dict[str, Any]], title: str | None = None) -> Table:
    rows = list(rows)
    beside = [k for k in ("predicted", "simulated") if any(r.get(f"{k}_peak_bytes") is not None for r in rows)]
    table = Table(title=title, header_style="bold")
    for name, justify in [("model", "left"), ("strategy", "left"), ("knobs", "left"), ("ranks", "left"),
                          ("device", "left"),
                          ("status", "left"), ("global batch x seq", "right"), ("peak MiB", "right"),
                          ("RSS MiB", "right"), ("s/step p50 [p10-p90]", "right"), ("tokens/s", "right"),
                          ("MFU", "right"), ("loss", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
        if name == "peak MiB":
            for kind in beside:
                table.add_column(f"{kind} MiB (error)", justify="right")
    for row in rows:
        status = row["status"]
        style = _STATUS_STYLE.get(status, "red")
        shape = f"{row['global_batch'] or row['batch_size']} x {row['seq_len']}"
        table.add_row(
            row["model"], row["strategy"], knob_label(row), _layout(row), row["device"],
            f"[{style}]{status}[/{style}]", shape,
            _mib(row.get("peak_bytes")), *(_beside(row, kind) for kind in beside),
            _mib(row.get("rss_peak_bytes")), _step(row),
            "-" if row.get("tokens_per_s") is None else f"{row['tokens_per_s']:,.0f}",
            "-" if row.get("mfu") is None else f"{row['mfu']:.1%}",
            "-" if row.get("loss") is None else f"{row['loss']:.5f}",
        )
    return table


def failures(rows: Iterable[dict[str, Any]]) -> list[str]:
    """One block per failed record: what ran and the last lines of its error."""
    return [f"{r['strategy']} on {r['model']} ({r['status']}):\n{r['error']}"
            for r in rows if r["status"] != "ok" and r.get("error")]


def print_records(rows: list[dict[str, Any]], title: str | None = None, out: Console | None = None) -> None:
    out = out or console()
    out.print(records_table(rows, title))
    for text in failures(rows):
        out.print(text, style="red", markup=False, highlight=False)
