"""The plots of `spacetime report`:

- tradeoff.png: peak memory per rank (x) against global tokens/s (y), one panel per model.  Each shape (global
  batch x seq) has its own marker and colour, and its own Pareto front (no other run of that shape is both
  smaller and faster), joined by a dashed line; runs of different shapes are never compared.  Points on their
  front are filled, the others hollow; the legend names every marker and line.  Labels do not overlap;
- rank_memory.png: every rank's peak memory per case (shape in the label), so uneven sharding shows.
Both plot training records; generate records have their own plot (generation_plot.py).
(accuracy.png, predicted and simulated peaks against measured ones, is accuracy_plot.py's.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.units import MIB
from harness.report.cases import by_model, by_shape, case_name, shape
from harness.report.labels import place_labels

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (less memory x, more throughput y), by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(ox <= x and oy >= y and (ox, oy) != (x, y) for ox, oy in points)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _measured(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "ok" and r.get("peak_bytes") and r.get("tokens_per_s")
            and r.get("workload") != "generate"]  # generate records: generation_plot.py


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panel(ax: Any, model: str, group: list[dict[str, Any]], styles: dict[str, tuple[str, str]]) -> None:
    """One model: per shape, its points (filled on its front, hollow off it) and its front."""
    hollow = False
    for key, rows in by_shape(group).items():
        marker, colour = styles[key]
        points = [(r["peak_bytes"] / MIB, r["tokens_per_s"]) for r in rows]
        front = pareto_front(points)
        on = [points[i] for i in front]
        off = [p for i, p in enumerate(points) if i not in front]
        hollow = hollow or bool(off)
        ax.scatter(*zip(*on, strict=True), marker=marker, s=55, color=colour, zorder=3,
                   label=f"{key} (global batch x seq)")
        if off:
            ax.scatter(*zip(*off, strict=True), marker=marker, s=55, facecolors="none", edgecolors=colour,
                       zorder=3)
        if len(on) > 1:
            ax.plot(*zip(*on, strict=True), "--", color=colour, lw=1, label=f"Pareto front, {key}")
    if hollow:
        ax.scatter([], [], marker="o", s=55, facecolors="none", edgecolors="grey", label="hollow: off its front")
    ax.set_title(f"{model}: memory versus throughput")
    ax.set_xlabel("peak memory per rank (MiB)")
    ax.set_ylabel("tokens/s (global)")
    ax.grid(alpha=0.3)
    ax.margins(0.2)
    ax.legend(loc="best", fontsize=8)


def tradeoff_figure(rows: list[dict[str, Any]]) -> Any:
    """The tradeoff figure (matplotlib), labels placed; plot_tradeoff saves it."""
    plt = _pyplot()
    groups = by_model(_measured(rows))
    keys = list(by_shape(r for g in groups.values() for r in g))
    styles = {k: (MARKERS[i % len(MARKERS)], f"C{i % 10}") for i, k in enumerate(keys)}
    panels = max(len(groups), 1)
    fig, axes = plt.subplots(1, panels, figsize=(7.5 * panels, 5.5), squeeze=False)
    for ax, (model, group) in zip(axes[0], groups.items(), strict=False):
        _panel(ax, model, group, styles)
    fig.tight_layout()
    for ax, group in zip(axes[0], groups.values(), strict=False):
        place_labels(ax, [(r["peak_bytes"] / MIB, r["tokens_per_s"]) for r in group], [case_name(r) for r in group])
    return fig


def plot_tradeoff(rows: list[dict[str, Any]], path: Path) -> Path:
    fig = tradeoff_figure(rows)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_rank_memory(rows: list[dict[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    measured = [r for r in _measured(rows) if r.get("peak_bytes_per_rank")]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(measured) + 2), 4.5))
    width = 0.8 / max((len(r["peak_bytes_per_rank"]) for r in measured), default=1)
    labelled: set[int] = set()
    for i, row in enumerate(measured):
        for rank, value in enumerate(row["peak_bytes_per_rank"]):
            ax.bar(i - 0.4 + width * (rank + 0.5), value / MIB, width, color=f"C{rank % 10}",
                   label=None if rank in labelled else f"rank {rank}")
            labelled.add(rank)
    ax.set_xticks(range(len(measured)), [f"{r['model']}, {shape(r)}\n{case_name(r)}" for r in measured],
                  fontsize=8, rotation=30, ha="right")
    ax.set_ylabel("peak memory (MiB)")
    ax.set_title("peak memory of every rank (global batch x seq in each label)")
    if measured:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no record has per-rank peaks", ha="center", va="center", transform=ax.transAxes)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
