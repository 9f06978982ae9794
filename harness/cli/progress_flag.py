"""--progress / --no-progress: progress lines on stderr for run, sweep and simulate (harness/core/progress.py)."""

from __future__ import annotations

import argparse

from harness.core.progress import ENV, MODES


def add_progress_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("progress")
    g.add_argument("--progress", nargs="?", const="on", default="auto", choices=MODES,
                   help=f"a line on stderr for each step under way (builds, rendezvous, warmup, memory and timed "
                   f"steps, a sweep's rows with ETA); auto: where stderr is a terminal, or as ${ENV}=1/0 says; "
                   "--progress alone: on")
    g.add_argument("--no-progress", dest="progress", action="store_const", const="off",
                   help="no progress lines (the same as --progress off)")
