"""The markdown page of `python -m benchmarks.overhead`: machine, date, command, and the ratio per strategy."""

from __future__ import annotations

import argparse
import os
import platform
from datetime import datetime, timezone
from typing import Any

GOAL = 1.02  # harness / bare, median over the pairs


def _machine() -> str:
    from harness.core.host import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _load(result: dict[str, Any]) -> str:
    return " / ".join(f"{x:.1f}" for x in result.get("load_average", [])) or "not recorded"


def markdown(result: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    """One row per strategy: the median ratio, its spread over the pairs, and the median step of each path."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Harness overhead on `{args.model}`, {args.device.upper()} ({date[:10]})",
        "",
        f"`{command}`",
        "",
        f"Machine: {_machine()}; torch {result['torch']}, {result['backend']}, {result['world_size']} ranks. "
        f"Load average (1 min) at the start and the end: {_load(result)}.",
        *(["The bare loop kept the CPU memory counter installed (--bare-counter): the ratio is the step code's "
           "alone.", ""] if args.bare_counter else []),
        f"Global batch {args.global_batch} x {args.seq_len}, fp32, AdamW. Per strategy: {args.warmup} untimed steps "
        f"of each path, then {args.pairs} pairs of {args.block_steps}-step blocks (harness, bare), the order "
        f"swapped every pair, each block after {args.settle} untimed step(s) of its own path. A step counts at "
        "its slowest rank; a pair's ratio is harness seconds over bare seconds (wall, as the harness reports a "
        f"step). Goal: median <= {GOAL}. The CPU seconds ratio (every "
        "rank's process over each block) is a cross-check that other load on the machine disturbs less. "
        f"Taken {date}.",
        "",
        "| strategy | harness / bare, median | p10-p90 | min-max | CPU seconds ratio, median [p10-p90] | "
        "harness s/step | bare s/step | pairs |",
        "|---|---:|---|---|---|---:|---:|---:|",
    ]
    for name, s in result["strategies"].items():
        lines.append(f"| {name} | {s['ratio_p50']:.4f} | {s['ratio_p10']:.4f}-{s['ratio_p90']:.4f} | "
                     f"{s['ratio_min']:.4f}-{s['ratio_max']:.4f} | {s['cpu_ratio_p50']:.4f} "
                     f"[{s['cpu_ratio_p10']:.4f}-{s['cpu_ratio_p90']:.4f}] | {s['harness_step_s']:.3f} | "
                     f"{s['bare_step_s']:.3f} | {len(s['ratios'])} |")
    lines += ["", "Ratios pair by pair (first block of the pair in brackets):", ""]
    for name, s in result["strategies"].items():
        pairs = ", ".join(f"{r:.3f} ({first[0]})" for r, first in zip(s["ratios"], s["first"], strict=True))
        lines.append(f"- {name}: {pairs}")
    lines += ["", "What the harness's step runs beyond the bare loop's ops, pinned by tests/unit/test_overhead.py: "
              "seven aten ops on scalars or views (the micro-batch split of inputs and targets, the loss share / "
              "grad_accum and its backward, the running total), whatever the model's size; time_steps adds a "
              "perf_counter pair and, on CUDA only, a synchronize around each step. On a CPU the worker also keeps "
              "the counting allocator installed (one map insert and one erase per tensor); the bare loop runs "
              "without it, so the ratio includes it (`--bare-counter` leaves it out)."]
    return "\n".join(lines) + "\n"
