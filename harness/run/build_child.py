"""The child process that runs the builds before launch (harness/run/prebuild.py starts it and kills it if it
takes too long): `python -m harness.run.build_child --spec JSON --out FILE`.  It writes {"env": ...}, the
environment the builds set for the ranks, or {"error": ...}.  Its imports are the builds' own, so it names its
first build within a second of starting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.core.spec import RunSpec
from harness.train.cpu_allocator import counting_allocator
from strategies import get_strategy


def _build(spec: RunSpec) -> dict[str, Any]:
    """In the child: the builds, and the environment they set for the ranks, or the error."""
    before = dict(os.environ)
    if spec.device == "cpu":
        try:
            counting_allocator()
        except Exception as why:  # no compiler, no headers: a result, not a crashed sweep
            return {"error": f"building the CPU allocation counter failed: {why}"}
    try:
        get_strategy(spec.strategy).prepare_host(spec)
    except Exception as why:  # e.g. DeepSpeed's ops do not compile here
        return {"error": f"preparing {spec.strategy} on this host failed: {why}"}
    return {"env": {k: v for k, v in os.environ.items() if before.get(k) != v}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.run.build_child", description=__doc__)
    parser.add_argument("--spec", required=True, help="the run's spec, as RunSpec.to_json writes it")
    parser.add_argument("--out", required=True, type=Path, help="where the result (JSON) goes")
    args = parser.parse_args(argv)
    result = _build(RunSpec.from_json(args.spec))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
