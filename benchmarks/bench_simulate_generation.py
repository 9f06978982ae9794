"""Wall seconds of `spacetime simulate --workload generate` for 7b, as a user waits for it: a fresh process, from
start to exit (benchmarks/bench_simulate_command.py times the training step's the same way).  The goal on this
project's 2-core CPU: 30 s or less for one rank, bf16, batch 1, a 2048-token prompt and 256 new tokens, greedy,
the static cache (the shape of benchmarks/results/simulate-generation-7b-cpu.md); beam search and the dynamic
cache beside it.
"""

from __future__ import annotations

import statistics

from benchmarks.bench_simulate_command import TIMEOUT_S, wall_seconds

RUNS = 3
_SHAPE = ["simulate", "--workload", "generate", "--model", "7b", "--dtype", "bf16", "--batch-size", "1",
          "--prompt-len", "2048", "--new-tokens", "256"]
CASES = {  # asv parameter -> the command line after `spacetime`
    "7b greedy static": [*_SHAPE, "--json"],
    "7b greedy dynamic": [*_SHAPE, "--kv-cache", "dynamic", "--json"],
    "7b 4 beams static": [*_SHAPE, "--num-beams", "4", "--json"],
}


class SimulateGeneration:
    """`spacetime simulate --workload generate` in a fresh process (median of RUNS)."""

    params = (list(CASES),)
    param_names = ("case",)
    timeout = TIMEOUT_S * (RUNS + 1) + 60

    def setup(self, case: str) -> None:
        wall_seconds(CASES[case])  # untimed: compiles the bytecode and warms the file cache

    def track_wall_seconds(self, case: str) -> float:
        return statistics.median(wall_seconds(CASES[case]) for _ in range(RUNS))

    track_wall_seconds.unit = "seconds"  # type: ignore[attr-defined]
