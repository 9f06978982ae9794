"""What `spacetime estimate --workload generate` answers (harness/estimate/generation.py): the per-rank breakdown
at generation's largest moment, by category, and the peak of each phase."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core.memory import PeakFigures
from harness.core.spec import RunSpec

GEN_CATEGORIES = ("weights", "buffers", "kv_cache", "activations", "logits", "temporaries", "comm", "context")


@dataclass
class GenPrediction(PeakFigures):
    """The per-rank breakdown at generation's largest moment, and the peak of each phase."""

    spec: RunSpec
    breakdown: dict[str, int]  # bytes per rank at the peak moment, by GEN_CATEGORIES
    phase: str
    host_bytes: int  # weights kept in host memory (or on disk) under --offload
    phase_peaks: dict[str, int]  # load_bytes, prefill_peak_bytes, decode_peak_bytes (no context)
    kv_cache_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"workload": "generate", "peak_bytes": self.peak_bytes, "device_bytes": self.device_bytes,
                "phase": self.phase, "breakdown": {**self.breakdown, "peak": self.peak_bytes},
                "host_bytes": self.host_bytes, "kv_cache_bytes": self.kv_cache_bytes, **self.phase_peaks}
