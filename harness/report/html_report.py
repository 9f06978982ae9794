"""`spacetime report`'s page: per-model tables of the newest records, with the plots, in one index.html.  Each row
says its shape (global batch x seq), precision and other knobs; the heading above a table states only what every
row of it shares."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from harness.core.units import MIB
from harness.report.accuracy_plot import has_figures, plot_accuracy
from harness.report.cases import by_model, knobs_but_dtype, shape
from harness.report.generation_plot import NAME, generated, plot_generation
from harness.report.plots import plot_rank_memory, plot_tradeoff

_COLUMNS = [("strategy", "strategy"), ("global batch x seq", "shape"), ("dtype", "dtype"), ("knobs", "knobs"),
            ("ranks", "world_size"), ("status", "status"), ("peak MiB", "peak_bytes"),
            ("predicted MiB", "predicted_peak_bytes"), ("simulated MiB", "simulated_peak_bytes"),
            ("RSS MiB", "rss_peak_bytes"), ("s/step p50", "step_s_p50"), ("p10", "step_s_p10"),
            ("p90", "step_s_p90"), ("tokens/s", "tokens_per_s"), ("MFU", "mfu"), ("loss", "loss")]


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column.endswith("bytes"):
        return f"{value / MIB:,.1f}"
    if column == "mfu":
        return f"{value:.1%}"
    if column == "loss":
        return f"{value:.5f}"
    if column == "tokens_per_s":
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def _shared(group: list[dict[str, Any]]) -> str:
    """What every row of the table has in common (device, torch, shape), and what differs by row."""
    parts, differ = [], []
    for name, values in [("", {str(r.get("device_name")) for r in group}),
                         ("torch ", {str(r.get("torch_version")) for r in group}),
                         ("global batch x seq ", {shape(r) for r in group}),
                         ("micro-batch per data-parallel rank ", {str(r.get("batch_size")) for r in group})]:
        if len(values) == 1:
            parts.append(f"{name}{values.pop()}")
        else:
            differ.append((name.strip() or "device") + f" ({len(values)} values)")
    text = ", ".join(parts)
    return text + (f"; differs by row: {', '.join(differ)}" if differ else "; the same on every row")


def _table(group: list[dict[str, Any]]) -> list[str]:
    parts = [f"<p>{html.escape(_shared(group))}</p><table><tr>"]
    parts += [f"<th>{html.escape(title)}</th>" for title, _ in _COLUMNS] + ["</tr>"]
    for row in group:
        values = {**row, "knobs": knobs_but_dtype(row), "shape": shape(row)}
        cells = "".join(f"<td>{html.escape(_cell(col, values.get(col)))}</td>" for _, col in _COLUMNS)
        parts.append(f"<tr>{cells}</tr>")
    return parts + ["</table>"]


def write_html(rows: list[dict[str, Any]], out: Path, images: list[Path]) -> Path:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>spacetime report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
             "</style></head><body><h1>spacetime report</h1>"]
    for model, group in by_model(rows).items():
        parts.append(f"<h2>{html.escape(model)}</h2>")
        parts += _table(group)
    parts += [f"<p><img src='{image.name}' alt='{image.stem}'></p>" for image in images]
    page = out / "index.html"
    page.write_text("\n".join(parts + ["</body></html>"]))
    return page


def write_report(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """tradeoff.png, rank_memory.png (accuracy.png, generation.png where rows have them) and index.html in
    `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    images = [plot_tradeoff(rows, out / "tradeoff.png"), plot_rank_memory(rows, out / "rank_memory.png")]
    if has_figures(rows):
        images.append(plot_accuracy(rows, out / "accuracy.png"))
    if generated(rows):  # generate records: memory against tokens/s per strategy or offload mode
        images.append(plot_generation(rows, out / NAME))
    return [*images, write_html(rows, out, images)]
