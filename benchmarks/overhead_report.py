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


def markdown(result: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    """One row per strategy: the median ratio, its spread over the pairs, and the median step of each path."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Harness overhead on `{args.model}`, {args.device.upper()} ({date[:10]})",
        "",
        f"`{command}`",
        "",
        f"Machine: {_machine()}; torch {result['torch']}, {result['backend']}, {result['world_size']} ranks.",
        *(["The bare loop kept the CPU memory counter installed (--bare-counter): the ratio is the step code's "
           "alone.", ""] if args.bare_counter else []),
        f"Global batch {args.global_batch} x {args.seq_len}, fp32, AdamW. Per strategy: {args.warmup} untimed steps "
        f"of each path, then {args.pairs} pairs of {args.block_steps}-step blocks (harness, bare), the order "
        "swapped every pair. A step counts at its slowest rank; a pair's ratio is harness seconds over bare "
        f"seconds (wall, as the harness reports a step). Goal: median <= {GOAL}. The CPU seconds ratio (every "
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
    return "\n".join(lines) + "\n"
