"""What the harness adds to a step (benchmarks/overhead.py): its timed steps over a bare loop on the same ranks,
model and data, per strategy, tracked as a fraction (median ratio - 1; lower is better, the goal is <= 0.02).

The cpu preset measures `125m` on 2 ranks, the gpu preset the preset's first model on every GPU.  One torchrun job
in `setup_cache` measures every strategy; nothing is launched at import.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import preset
from benchmarks.overhead import STRATEGIES, options, run_job

Cache = dict[str, dict[str, Any]]
_PRESET = preset()
PAIRS = 6


def job_options() -> Any:
    cpu = _PRESET.name == "cpu"
    return options(model="125m" if cpu else _PRESET.models[0], device="cpu" if cpu else "cuda",
                   nproc=_PRESET.nproc, global_batch=_PRESET.global_batch, seq_len=_PRESET.seq_len, pairs=PAIRS)


class HarnessOverhead:
    params = (list(STRATEGIES),)
    param_names = ("strategy",)
    timeout = 3600

    def setup_cache(self) -> Cache:
        strategies: Cache = run_job(job_options())["strategies"]
        return strategies

    def track_overhead_fraction(self, cache: Cache, strategy: str) -> float:
        """Median over the pairs of harness seconds / bare seconds, minus 1."""
        return float(cache[strategy]["ratio_p50"]) - 1.0

    track_overhead_fraction.unit = "fraction"  # type: ignore[attr-defined]
