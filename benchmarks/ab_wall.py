"""A/B wall time of one command in two source trees, run alternately, back to back.

    python benchmarks/ab_wall.py [--runs N] [--json] A_DIR B_DIR -- COMMAND...

Runs COMMAND (no shell) with A_DIR, then B_DIR, as both the working directory and the front of PYTHONPATH, so
`python -m harness.cli ...` runs that tree's code; N times each, alternating A, B, A, B so that load on a
shared machine falls on both alike.  One untimed run of each comes first (bytecode, file cache).  Prints, per
tree, the median, min and max seconds and the runs, then the ratio of the medians (B / A).  For example,
`spacetime estimate` before and after a commit:

    git worktree add /tmp/base c945a19
    python benchmarks/ab_wall.py --runs 10 /tmp/base . -- \
        .venv/bin/python -m harness.cli estimate --model 70b --strategy fsdp_full_shard --nproc 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_once(command: list[str], tree: Path) -> float:
    """Seconds from start to exit of `command` in `tree`; an error if it fails."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH")) if p))
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} in {tree} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return seconds


def alternate(command: list[str], trees: list[Path], runs: int) -> list[list[float]]:
    """`runs` wall times per tree, taken A, B, A, B, ... after one untimed run of each."""
    for tree in trees:
        run_once(command, tree)
    times: list[list[float]] = [[] for _ in trees]
    for _ in range(runs):
        for i, tree in enumerate(trees):
            times[i].append(run_once(command, tree))
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A/B wall time of one command in two source trees, alternately")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per tree (default 10)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument("a", type=Path, help="tree A (before)")
    parser.add_argument("b", type=Path, help="tree B (after)")
    parser.add_argument("command", nargs="+", help="the command, after --")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs: must be >= 1, got {args.runs}")
    trees = [args.a.resolve(), args.b.resolve()]
    if os.sep in args.command[0]:  # a path to the program (.venv/bin/python) is taken from here, not each tree
        args.command[0] = os.path.abspath(args.command[0])  # not resolve(): a venv python is a symlink
    times = alternate(args.command, trees, args.runs)
    result = {"command": args.command, "runs": args.runs,
              **{side: {"tree": str(tree), **summary(t), "seconds": t}
                 for side, tree, t in zip("AB", trees, times, strict=True)}}
    result["ratio_b_over_a"] = result["B"]["median"] / result["A"]["median"]
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{' '.join(args.command)}: {args.runs} runs each, alternating")
    for side in "AB":
        r = result[side]
        print(f"{side} {r['tree']}: median {r['median']:.3f} s, min {r['min']:.3f}, max {r['max']:.3f}  "
              f"[{', '.join(f'{s:.3f}' for s in r['seconds'])}]")
    print(f"B / A (medians): {result['ratio_b_over_a']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
