"""`spacetime report`: the newest record of each case, as tables per model, plots and one HTML page.

- tradeoff.png: peak memory per rank (x) against global tokens/s (y), one panel per model, the Pareto front
  (no other strategy is both smaller and faster) joined by a line: the space-versus-time picture;
- rank_memory.png: every rank's peak memory per strategy, so uneven sharding shows;
- accuracy.png: predicted and simulated peaks against measured ones, where records carry them.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.compare import case_key
from harness.knobs import knob_label

MIB = 1024 * 1024


def latest(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest record of each case (what was run, where), in first-seen order."""
    newest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = case_key(row)
        if key not in newest or (row.get("utc_time") or "") >= (newest[key].get("utc_time") or ""):
            newest[key] = row
    return list(newest.values())


def by_model(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["model"], []).append(row)
    return groups


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (less memory x, more throughput y), by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(ox <= x and oy >= y and (ox, oy) != (x, y) for ox, oy in points)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def case_name(row: dict[str, Any]) -> str:
    """`strategy xN`, with the knobs that moved off their defaults in brackets."""
    knobs = knob_label(row)
    return f"{row['strategy']} x{row['nproc']}" + ("" if knobs == "-" else f" [{knobs}]")


def _measured(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "ok" and r.get("peak_bytes") and r.get("tokens_per_s")]


def plot_tradeoff(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_model(_measured(rows))
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(6.5 * max(len(groups), 1), 5), squeeze=False)
    for ax, (model, group) in zip(axes[0], groups.items(), strict=False):
        points = [(r["peak_bytes"] / MIB, r["tokens_per_s"]) for r in group]
        front = pareto_front(points)
        for i, ((x, y), row) in enumerate(zip(points, group, strict=True)):
            ax.scatter([x], [y], s=60, marker="o" if i in front else "x", zorder=3)
            ax.annotate(case_name(row), (x, y), textcoords="offset points", xytext=(5, 5),
                        fontsize=8)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=1, label="Pareto front")
        ax.set_title(f"{model}: memory versus throughput")
        ax.set_xlabel("peak memory per rank (MiB)")
        ax.set_ylabel("tokens/s (global)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_rank_memory(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in _measured(rows) if r.get("peak_bytes_per_rank")]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(measured) + 2), 4.5))
    width = 0.8 / max((len(r["peak_bytes_per_rank"]) for r in measured), default=1)
    labelled: set[int] = set()
    for i, row in enumerate(measured):
        for rank, value in enumerate(row["peak_bytes_per_rank"]):
            ax.bar(i - 0.4 + width * (rank + 0.5), value / MIB, width, color=f"C{rank % 10}",
                   label=None if rank in labelled else f"rank {rank}")
            labelled.add(rank)
    ax.set_xticks(range(len(measured)), [f"{r['model']}\n{case_name(r)}" for r in measured], fontsize=8,
                  rotation=30, ha="right")
    ax.set_ylabel("peak memory (MiB)")
    ax.set_title("peak memory of every rank")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    from harness.accuracy_plot import has_figures, plot_accuracy

    images = [plot_tradeoff(rows, out / "tradeoff.png"), plot_rank_memory(rows, out / "rank_memory.png")]
    if has_figures(rows):
        images.append(plot_accuracy(rows, out / "accuracy.png"))
    return [*images, write_html(rows, out, images)]
