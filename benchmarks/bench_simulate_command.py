"""Wall seconds of `spacetime simulate` for a 7B model on 8 fake ranks, as a user waits for it: a fresh process,
from start to exit.

`bench_predict.Simulate` times `simulate()` inside the benchmark's process; the command adds what a user waits
for besides: the interpreter, `import torch` and the distributed stack (a third of the whole here), and the
interpreter's exit.  The goal on this project's 2-core CPU: 10 s or less for each case below.

A `track_` benchmark, not `timeraw_`: asv's `timeraw_` times a statement inside a fresh interpreter, so the
interpreter's start and exit would be left out, while this times the whole process as the shell does.  Each
call runs the command RUNS times in fresh processes and returns the median (one run on a shared machine is too
noisy to track).  The cases are those of benchmarks/results/simulate-7b-cpu.md, plus DDP at the default shape.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 3
TIMEOUT_S = 300
_SHAPE = ["--model", "7b", "--nproc", "8"]
_BF16 = ["--dtype", "bf16", "--batch-size", "1", "--seq-len", "2048"]
CASES = {  # asv parameter -> the command line after `spacetime`
    "7b fsdp_full_shard bf16": ["simulate", *_SHAPE, "--strategy", "fsdp_full_shard", *_BF16, "--json"],
    "7b fsdp_tp bf16": ["simulate", *_SHAPE, "--strategy", "fsdp_tp", *_BF16, "--json"],
    "7b ddp": ["simulate", *_SHAPE, "--strategy", "ddp", "--json"],
}


def wall_seconds(args: list[str]) -> float:
    """Seconds from start to exit of one `spacetime ARGS` (python -m harness.cli, the installed package)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"spacetime {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return seconds


class SimulateCommand:
    """`spacetime simulate` in a fresh process, interpreter start-up, imports and exit included (median of
    RUNS)."""

    params = (list(CASES),)
    param_names = ("case",)
    timeout = TIMEOUT_S * (RUNS + 1) + 60

    def setup(self, case: str) -> None:
        wall_seconds(CASES[case])  # untimed: compiles the bytecode and warms the file cache

    def track_wall_seconds(self, case: str) -> float:
        return statistics.median(wall_seconds(CASES[case]) for _ in range(RUNS))

    track_wall_seconds.unit = "seconds"  # type: ignore[attr-defined]
