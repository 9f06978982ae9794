"""The rich console every terminal table prints through."""

from __future__ import annotations

import sys

from rich.console import Console


def console() -> Console:
    """A console that does not squeeze tables to 80 columns when output goes to a file or pipe."""
    return Console() if sys.stdout.isatty() else Console(width=200)
