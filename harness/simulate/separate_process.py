"""One simulation in a process of its own: `python -m harness.simulate.separate_process --spec JSON`, as
`run --simulate` and sweeps use it, so the fake process group and the fake-mode patches stay out of the
launcher, and RSS is the simulation's own."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from harness.core import progress
from harness.core.errors import NotModelled, Unsupported
from harness.core.spec import RunSpec
from harness.simulate.generate_runner import simulate_generation
from harness.simulate.runner import simulate

SUBPROCESS_TIMEOUT_S = 600.0


def simulated_peak(spec: RunSpec, device: str) -> tuple[int | None, str | None]:
    """(peak bytes, None) from a process of its own, or (None, why) when it cannot be simulated or failed."""
    cmd = [sys.executable, "-m", "harness.simulate.separate_process", "--spec", spec.to_json(), "--device", device]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"simulate timed out after {SUBPROCESS_TIMEOUT_S:.0f} s"
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return int(json.loads(lines[-1])["peak_bytes"]), None
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return None, tail[:300]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness.simulate.separate_process")
    parser.add_argument("--spec", required=True, help="RunSpec as JSON")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="the target to account for")
    args = parser.parse_args(argv)
    progress.configure("off")  # stderr is captured: its last line is the reason of a failure
    try:
        spec = RunSpec.from_json(args.spec)
        run = simulate_generation if spec.workload == "generate" else simulate
        sim = run(spec, args.device)
    except Unsupported as why:
        print(f"unsupported: {why}", file=sys.stderr)
        return 3
    except NotModelled as why:
        print(f"not modelled: {why}", file=sys.stderr)
        return 3
    print(json.dumps(sim.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
