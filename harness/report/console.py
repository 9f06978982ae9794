"""The rich console every terminal table prints through, and the width tables are fitted to."""

from __future__ import annotations

import os
import sys

from rich.console import Console

DEFAULT_WIDTH = 100  # where output goes to a file or pipe and $COLUMNS is not set


def console() -> Console:
    """A console as wide as $COLUMNS, else the terminal, else DEFAULT_WIDTH when output goes to a file or pipe
    (rich would take 80 there)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return Console(width=int(columns))
    return Console() if sys.stdout.isatty() else Console(width=DEFAULT_WIDTH)
