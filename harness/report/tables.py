"""Records as a terminal table (rich) that fits the terminal, or as csv/json/markdown: one row per record, failures'
last lines under the table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console

from harness.core.knobs import KNOBS, knob_label
from harness.core.units import MIB
from harness.report.cases import shape
from harness.report.columns import MACHINE, Column, Fitted, emit, fields
from harness.report.console import console
from harness.report.generation_columns import generation_columns
from harness.report.pipeline_columns import pipeline_columns
from harness.run.annotate import ERROR_COLUMNS, relative_error

_STATUS_STYLE = {"ok": "green", "unsupported": "yellow", "interrupted": "yellow"}  # red: the spec failed
KNOB_FIELDS = ("dtype", "activation_checkpointing", "ckpt_every", "lora_rank", "lora_alpha", "lora_targets", "quant",
               "optimizer", "grad_accum", "compile", "loss_type", "loss_chunks")
assert {field for field, _ in KNOBS.values()} <= set(KNOB_FIELDS)
_STEP_FIELDS = fields("step_s_p50", "step_s_p10", "step_s_p90")


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:,.1f}"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _step(row: dict[str, Any]) -> str:
    if row.get("step_s_p50") is None:
        return "-"
    return f"{row['step_s_p50']:.3f} [{row['step_s_p10']:.3f}-{row['step_s_p90']:.3f}]"


def ranks(row: dict[str, Any]) -> str:
    """World size, then the mesh where it is not plain data parallelism: `2`, `4 tp2` (data parallel over the
    rest), `4 dp2x2` (replicas x shards), `8 dp2x2 tp2`, `4 pp4 8mb` (4 stages, 8 micro-batches)."""
    parts = [str(row.get("world_size") or "-")]
    replicate, shard, tp = row.get("mesh_dp_replicate"), row.get("mesh_dp_shard"), row.get("mesh_tp")
    if (replicate or 1) > 1:
        parts.append(f"dp{replicate}x{shard}")
    if (tp or 1) > 1:
        parts.append(f"tp{tp}")
    if (row.get("mesh_pp") or 1) > 1:  # the stages, then the micro-batches each step is split into
        parts.append(f"pp{row['mesh_pp']} {row.get('pp_microbatches') or row['mesh_pp']}mb")
    return " ".join(parts)


def _beside(kind: str) -> Column:
    """A predicted or simulated peak in MiB with its error against the measured one; narrower, the error alone."""
    column = ERROR_COLUMNS[kind]

    def error(row: dict[str, Any]) -> str:
        value = relative_error(row, kind)
        return "-" if value is None else f"{value:+.1%}"

    def text(row: dict[str, Any]) -> str:
        if row.get(column) is None:
            return "-"
        return _mib(row[column]) + ("" if relative_error(row, kind) is None else f" ({error(row)})")

    def values(row: dict[str, Any]) -> dict[str, Any]:
        return {column: row.get(column), f"{kind}_error": relative_error(row, kind)}

    narrow = Column(f"{kind}_error", f"{kind}\nerror", error, values=values)
    return Column(f"{kind}_mib", f"{kind}\nMiB (error)", text, drop=5, values=values, narrow=narrow)


def record_columns(rows: list[dict[str, Any]]) -> list[Column]:
    """The records table's columns; predicted and simulated errors only where a row has them."""
    beside = [k for k in ERROR_COLUMNS if any(r.get(ERROR_COLUMNS[k]) is not None for r in rows)]
    return [
        Column("model", "model", lambda r: str(r["model"]), "left", fold=True),
        Column("strategy", "strategy", lambda r: str(r["strategy"]), "left"),
        Column("knobs", "knobs", knob_label, "left", wrap=True, fold=True, values=fields(*KNOB_FIELDS)),
        Column("ranks", "ranks", ranks, "left",
               values=fields("nproc", "world_size", "mesh_dp_replicate", "mesh_dp_shard", "mesh_tp", "mesh_pp",
                             "pp_microbatches")),
        Column("hosts", "hosts", lambda r: str(r.get("nnodes") or 1), drop=1, fold=True, usual="1",
               values=fields("nnodes")),
        Column("device", "device", lambda r: str(r.get("device")), "left", drop=9, fold=True,
               values=fields("device", "device_name")),
        Column("status", "status", lambda r: str(r["status"]), "left",
               style=lambda r: _STATUS_STYLE.get(r["status"], "red")),
        Column("shape", "global batch\nx seq", shape, drop=2, fold=True,
               values=fields("global_batch", "batch_size", "seq_len")),
        Column("peak_mib", "peak\nMiB", lambda r: _mib(r.get("peak_bytes")),
               values=fields("peak_bytes", "peak_bytes_per_rank")),
        *(_beside(kind) for kind in beside),
        *generation_columns(rows),
        *pipeline_columns(rows),
        Column("rss_mib", "RSS\nMiB", lambda r: _mib(r.get("rss_peak_bytes")), drop=7,
               values=fields("rss_peak_bytes", "rss_peak_bytes_per_rank")),
        Column("step_s", "s/step\np50 [p10-p90]", _step, drop=6, values=_STEP_FIELDS,
               narrow=Column("step_s_p50", "s/step\np50", lambda r: _number(r.get("step_s_p50"), ".3f"), drop=3,
                             values=_STEP_FIELDS)),
        Column("tokens_per_s", "tokens/s", lambda r: _number(r.get("tokens_per_s"), ",.0f"), drop=4,
               values=fields("tokens_per_s")),
        Column("mfu", "MFU", lambda r: _number(r.get("mfu"), ".1%"), drop=8, values=fields("mfu")),
        Column("loss", "loss", lambda r: _number(r.get("loss"), ".5f"), values=fields("loss")),
        Column("error", "error", lambda r: str(r.get("error") or ""), "left", view=MACHINE,
               values=fields("error", "simulate_error", "git_commit", "utc_time")),
    ]


def records_table(rows: Iterable[dict[str, Any]], title: str | None = None, wide: bool = False) -> Fitted:
    """The records as a table that fits the console it is printed on."""
    rows = list(rows)
    return Fitted(record_columns(rows), rows, title, wide)


def failures(rows: Iterable[dict[str, Any]]) -> list[str]:
    """One block per failed record: what ran and the last lines of its error."""
    return [f"{r['strategy']} on {r['model']} ({r['status']}):\n{r['error']}"
            for r in rows if r["status"] != "ok" and r.get("error")]


def print_records(rows: list[dict[str, Any]], title: str | None = None, out: Console | None = None,
                  fmt: str = "table", wide: bool = False) -> None:
    """The records as a table fitted to the terminal (every column with `wide`), failures under it; or every
    column as `fmt` (csv, json, markdown) on stdout, failures included in their `error` field."""
    out = out or console()
    emit(record_columns(rows), rows, out, title, fmt, wide)
    if fmt == "table":
        for text in failures(rows):
            out.print(text, style="red", markup=False, highlight=False)
