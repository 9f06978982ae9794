"""Wall seconds of `spacetime estimate` as a user waits for it: a fresh process, from start to exit.

The prediction itself takes well under a millisecond (bench_predict.py); what the command costs is the
interpreter starting and the imports, which is why the path imports no torch (the goal: under 0.5 s for 70b on
the 2-core CPU; tests/unit/test_light_commands.py holds the imports).

A `track_` benchmark, not `timeraw_`: asv's `timeraw_` times a statement inside a fresh interpreter, after the
interpreter and `site` have started and with the command's output mixed into the figure it reads back from the
child's stdout, while this times the whole process as the shell does.  Each call runs the command RUNS times in
fresh processes and returns the median, which a single run on a shared machine is too noisy for.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 5
COMMANDS = {  # asv parameter -> the command line after `spacetime`
    "estimate 70b": ["estimate", "--model", "70b", "--strategy", "fsdp_full_shard", "--nproc", "8"],
    "estimate 70b max-batch json": ["estimate", "--model", "70b", "--strategy", "fsdp_full_shard", "--nproc", "8",
                                    "--gpu", "H100-80GB", "--max-batch", "--json"],
}


def wall_seconds(args: list[str]) -> float:
    """Seconds from start to exit of one `spacetime ARGS` (python -m harness.cli, the installed package)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=120)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"spacetime {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return seconds


class EstimateCommand:
    """`spacetime estimate` in a fresh process, interpreter start-up and imports included (median of RUNS)."""

    params = (list(COMMANDS),)
    param_names = ("command",)
    timeout = 300

    def setup(self, command: str) -> None:
        wall_seconds(COMMANDS[command])  # untimed: compiles the bytecode and warms the file cache

    def track_wall_seconds(self, command: str) -> float:
        return statistics.median(wall_seconds(COMMANDS[command]) for _ in range(RUNS))

    track_wall_seconds.unit = "seconds"  # type: ignore[attr-defined]
