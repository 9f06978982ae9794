"""accuracy.png for `spacetime report`: predicted and simulated peaks against the measured ones, with the
y = x line and the 5% band the accuracy tests hold predictions to.  The marker says which figure (predicted or
simulated), the colour which shape (global batch x seq); the legend names each pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.units import MIB
from harness.report.cases import by_shape
from harness.run.annotate import ERROR_COLUMNS

MARKERS = {"predicted": "o", "simulated": "x"}


def has_figures(rows: list[dict[str, Any]]) -> bool:
    return any(r.get(column) is not None and r.get("peak_bytes") for r in rows for column in ERROR_COLUMNS.values())


def _pairs(rows: list[dict[str, Any]], column: str) -> list[tuple[float, float]]:
    return [(r["peak_bytes"] / MIB, r[column] / MIB) for r in rows
            if r["status"] == "ok" and r.get("peak_bytes") and r.get(column) is not None]


def plot_accuracy(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 6))
    measured_all: list[float] = []
    for i, (key, group) in enumerate(by_shape(rows).items()):
        for kind, column in ERROR_COLUMNS.items():
            pairs = _pairs(group, column)
            if pairs:
                measured_all += [m for m, _ in pairs]
                ax.scatter([m for m, _ in pairs], [f for _, f in pairs], marker=MARKERS[kind], s=40,
                           color=f"C{i % 10}", label=f"{kind}, {key} (global batch x seq)", zorder=3)
    if measured_all:
        lo, hi = min(measured_all) * 0.8, max(measured_all) * 1.2
        ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="= measured")
        ax.fill_between([lo, hi], [lo * 0.95, hi * 0.95], [lo * 1.05, hi * 1.05], color="grey", alpha=0.2,
                        label="±5%")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("measured peak per rank (MiB)")
    ax.set_ylabel("predicted / simulated peak per rank (MiB)")
    ax.set_title("predicted and simulated against measured")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
