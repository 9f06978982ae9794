"""`spacetime report`'s page: per-model tables of the newest records, with the plots, in one index.html."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from harness.core.knobs import knob_label
from harness.core.units import MIB
from harness.report.accuracy_plot import has_figures, plot_accuracy
from harness.report.cases import by_model
from harness.report.plots import plot_rank_memory, plot_tradeoff

_COLUMNS = [("strategy", "strategy"), ("knobs", "knobs"), ("ranks", "world_size"), ("status", "status"),
            ("peak MiB", "peak_bytes"), ("predicted MiB", "predicted_peak_bytes"),
            ("simulated MiB", "simulated_peak_bytes"), ("RSS MiB", "rss_peak_bytes"), ("s/step p50", "step_s_p50"),
            ("p10", "step_s_p10"), ("p90", "step_s_p90"), ("tokens/s", "tokens_per_s"), ("MFU", "mfu"),
            ("loss", "loss")]


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column.endswith("bytes"):
        return f"{value / MIB:,.1f}"
    if column == "mfu":
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def write_html(rows: list[dict[str, Any]], out: Path, images: list[Path]) -> Path:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>spacetime report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
             "</style></head><body><h1>spacetime report</h1>"]
    for model, group in by_model(rows).items():
        first = group[0]
        parts.append(f"<h2>{html.escape(model)}</h2><p>{html.escape(str(first.get('device_name')))}, "
                     f"torch {html.escape(str(first.get('torch_version')))}, batch {first.get('batch_size')} x "
                     f"seq {first.get('seq_len')} per data-parallel rank</p><table><tr>")
        parts += [f"<th>{html.escape(title)}</th>" for title, _ in _COLUMNS] + ["</tr>"]
        for row in group:
            values = {**row, "knobs": knob_label(row)}
            cells = "".join(f"<td>{html.escape(_cell(col, values.get(col)))}</td>" for _, col in _COLUMNS)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
    parts += [f"<p><img src='{image.name}' alt='{image.stem}'></p>" for image in images]
    page = out / "index.html"
    page.write_text("\n".join(parts + ["</body></html>"]))
    return page


def write_report(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """tradeoff.png, rank_memory.png and index.html in `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    images = [plot_tradeoff(rows, out / "tradeoff.png"), plot_rank_memory(rows, out / "rank_memory.png")]
    if has_figures(rows):
        images.append(plot_accuracy(rows, out / "accuracy.png"))
    return [*images, write_html(rows, out, images)]
