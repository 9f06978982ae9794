"""The plots of `spacetime report`:

- tradeoff.png: peak memory per rank (x) against global tokens/s (y), one panel per model, the Pareto front
  (no other strategy is both smaller and faster) joined by a line: the space-versus-time picture;
- rank_memory.png: every rank's peak memory per strategy, so uneven sharding shows.
(accuracy.png, predicted and simulated peaks against measured ones, is accuracy_plot.py's.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.units import MIB
from harness.report.cases import by_model, case_name


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (less memory x, more throughput y), by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(ox <= x and oy >= y and (ox, oy) != (x, y) for ox, oy in points)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


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
