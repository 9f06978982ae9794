"""--wide and --format: how a command that prints a table prints it."""

from __future__ import annotations

import argparse

from harness.report.columns import FORMATS


def add_output_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--wide", action="store_true", help="every column, however wide the terminal (default: the "
                   "table fits the terminal, or 100 columns in a pipe; $COLUMNS sets the width)")
    g.add_argument("--format", default="table", choices=FORMATS, help="a table, or every column as csv, json or "
                   "markdown on stdout")
