"""A prediction: the per-rank breakdown at the phase of the step where the total is largest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core.memory import CATEGORIES, CUDA_CONTEXT_BYTES, PeakFigures
from harness.core.spec import RunSpec


@dataclass
class Prediction(PeakFigures):
    spec: RunSpec
    breakdown: dict[str, int]  # bytes per rank at the peak phase
    phase: str
    host_bytes: int  # what offload keeps in host memory

    def to_json(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "device_bytes": self.device_bytes, "phase": self.phase,
                "breakdown": dict(self.breakdown), "host_bytes": self.host_bytes}


def largest_phase(held: dict[str, float], phases: dict[str, dict[str, float]],
                  device: str) -> tuple[dict[str, int], str]:
    """The breakdown at the phase with the largest total (what every phase holds plus what it adds), with the
    CUDA context on a CUDA target, and the phase's name."""
    best, best_parts = "", {"total": -1.0}
    for name, extra in phases.items():
        parts = {k: held.get(k, 0.0) + extra.get(k, 0.0) for k in CATEGORIES[:-1]}
        if sum(parts.values()) > sum(best_parts.values()):
            best, best_parts = name, parts
    context = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    return {k: int(best_parts[k]) for k in CATEGORIES[:-1]} | {"context": context}, best
