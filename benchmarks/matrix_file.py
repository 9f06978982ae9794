"""Writing a measured accuracy matrix (benchmarks/results/*-cpu.json): the cases, sorted, under the machine and
the torch build that measured them."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

REFERENCE = "smallest per-rank peak over ranks and repeats (CPU counting allocator)"


def write_matrix(path: Path, cases: dict[str, dict[str, Any]]) -> None:
    """Write `cases` (each with the `device_name` its records named) to `path` with the machine and torch."""
    import torch

    machine = next(iter(cases.values()))["device_name"] if cases else None
    out = {"machine": f"{machine}, 2 cores, gloo ({platform.machine()})", "torch": torch.__version__,
           "reference": REFERENCE, "cases": dict(sorted(cases.items()))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
