"""Point labels on a matplotlib axes that overlap neither each other, the points nor the legend: each label
tries offsets around its point, nearest first, and takes the first whose box is free and inside the axes; a
label pushed further out gets a thin leader line to its point.  Call after the layout is final (tight_layout), since the
boxes are measured in display pixels."""

from __future__ import annotations

from typing import Any

# (dx, dy) in points, nearest first; each ring is tried at growing distances
_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0)]
_ALIGN = {-1: "right", 0: "center", 1: "left"}
_VALIGN = {-1: "top", 0: "center", 1: "bottom"}
_RINGS = (6, 14, 24, 36, 50)
_POINT_PX = 5.0  # half the side of the box a marker occupies


def _point_box(ax: Any, x: float, y: float) -> Any:
    from matplotlib.transforms import Bbox

    px, py = ax.transData.transform((x, y))
    return Bbox([[px - _POINT_PX, py - _POINT_PX], [px + _POINT_PX, py + _POINT_PX]])


def place_labels(ax: Any, points: list[tuple[float, float]], texts: list[str], fontsize: float = 8) -> list[Any]:
    """Annotate each point with its text where the label overlaps nothing placed before; returns the labels."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    taken = [_point_box(ax, x, y) for x, y in points]
    if ax.get_legend() is not None:
        taken.append(ax.get_legend().get_window_extent(renderer))
    placed = []
    for (x, y), text in zip(points, texts, strict=True):
        best: tuple[int, Any, Any] | None = None
        for ring in _RINGS:
            for dx, dy in _DIRECTIONS:
                label = ax.annotate(text, (x, y), xytext=(dx * ring, dy * ring), textcoords="offset points",
                                    ha=_ALIGN[dx], va=_VALIGN[dy], fontsize=fontsize,
                                    arrowprops=None if ring == _RINGS[0] else {"arrowstyle": "-", "lw": 0.5,
                                                                               "color": "grey"})
                box = label.get_window_extent(renderer).padded(1)
                clashes = sum(box.overlaps(other) for other in taken) + (0 if _contains(inside, box) else 1)
                if best is None or clashes < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (clashes, label, box)
                else:
                    label.remove()
                if clashes == 0:
                    break
            if best is not None and best[0] == 0:
                break
        assert best is not None
        taken.append(best[2])
        placed.append(best[1])
    return placed


def _contains(outer: Any, inner: Any) -> bool:
    return bool(outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0 and inner.y1 <= outer.y1)
