#!/usr/bin/env python3
"""Several `spacetime` command lines run in one process, one after another, through the command's own entry
point (what the `spacetime` script calls), so a dry run of every case imports torch once.

    python ci/gpu_check/dry_runs.py < argvs.json     [[...argv...], ...] in, [{code, out, err}, ...] out
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def run_one(argv: list[str]) -> dict[str, object]:
    from harness.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse's refusals
            code = stop.code if isinstance(stop.code, int) else 2
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}


if __name__ == "__main__":
    print(json.dumps([run_one(argv) for argv in json.load(sys.stdin)]))
