"""generation.png, the plot `spacetime report` draws for generate records: peak memory per rank (x) against
tokens per second over every sequence (y), one panel per model, one point per strategy or offload mode (and
knobs), each shape (batch x (prompt + new tokens)) in its own marker and colour; labels do not overlap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.units import MIB
from harness.report.cases import by_model, by_shape, case_name
from harness.report.labels import place_labels

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
NAME = "generation.png"


def generated(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The generate records that ran, with a peak and a throughput to plot."""
    return [r for r in rows if r.get("workload") == "generate" and r["status"] == "ok" and r.get("peak_bytes")
            and r.get("tokens_per_s")]


def point_label(row: dict[str, Any]) -> str:
    """`single x1, offload disk [bf16]`: the strategy, the offload mode where there is one, the knobs."""
    name = case_name(row)
    if row.get("offload", "none") == "none":
        return name
    strategy, _, knobs = name.partition(" [")
    return f"{strategy}, offload {row['offload']}" + (f" [{knobs}" if knobs else "")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def generation_figure(rows: list[dict[str, Any]]) -> Any:
    plt = _pyplot()
    groups = by_model(generated(rows))
    styles = {k: (MARKERS[i % len(MARKERS)], f"C{i % 10}") for i, k in
              enumerate(by_shape(r for g in groups.values() for r in g))}
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(7.5 * max(len(groups), 1), 5.5), squeeze=False)
    for ax, (model, group) in zip(axes[0], groups.items(), strict=False):
        for key, shaped in by_shape(group).items():
            marker, colour = styles[key]
            ax.scatter([r["peak_bytes"] / MIB for r in shaped], [r["tokens_per_s"] for r in shaped], marker=marker,
                       s=55, color=colour, zorder=3, label=f"{key} (batch x (prompt + new))")
        ax.set_title(f"{model}: generation, memory versus throughput")
        ax.set_xlabel("peak memory per rank (MiB)")
        ax.set_ylabel("tokens/s (every sequence)")
        ax.grid(alpha=0.3)
        ax.margins(0.2)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    for ax, group in zip(axes[0], groups.values(), strict=False):
        place_labels(ax, [(r["peak_bytes"] / MIB, r["tokens_per_s"]) for r in group], [point_label(r) for r in group])
    return fig


def plot_generation(rows: list[dict[str, Any]], path: Path) -> Path:
    fig = generation_figure(rows)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path
