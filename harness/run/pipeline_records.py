"""A pipeline run's record fields from its ranks' figures: the mesh's pipeline degree and the bubble."""

from __future__ import annotations

from typing import Any


def pipeline_figures(ranks: list[dict[str, Any]], layout: dict[str, Any]) -> dict[str, Any]:
    """mesh_pp, and for a pipeline the measured bubble (the mean over ranks, and each rank's) beside the
    schedule's theoretical one; {} for a run whose result has no pipeline figures."""
    pp = layout.get("pp")
    if pp is None:
        return {}
    found = [r.get("bubble") for r in ranks]
    bubbles = [float(b) for b in found if b is not None]
    if len(bubbles) != len(found):
        return {"mesh_pp": pp}
    return {"mesh_pp": pp, "bubble_fraction": sum(bubbles) / len(bubbles), "bubble_fraction_per_rank": bubbles,
            "bubble_theory": ranks[0].get("bubble_theory")}
