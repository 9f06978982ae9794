"""`spacetime simulate`, and `python -m harness.simulate_cli --spec JSON` (one spec in a process of its own,
as `run --simulate` and sweeps use it: the fake process group and the fake-mode patches stay out of the
launcher, and RSS is the simulation's own)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from rich.table import Table

from harness.estimate import GIB, add_fit_flags, fits_json, memory_limit, print_fits, run_figures
from harness.report import console
from harness.simulate import Simulation, simulate
from harness.spec import RunSpec, Unsupported

SUBPROCESS_TIMEOUT_S = 600.0


def result(spec: RunSpec, args: argparse.Namespace) -> tuple[Simulation, dict[str, Any]]:
    limit = memory_limit(args.gpu, args.gpu_memory)  # bad input is reported before anything runs
    sim = simulate(spec, spec.device)
    out = sim.to_json()
    if limit:
        out["fits"] = fits_json(limit, sim.device_bytes)
    return sim, out


def print_simulation(spec: RunSpec, sim: Simulation, out: dict[str, Any]) -> None:
    title = (f"{spec.model}, {spec.strategy} on {spec.nproc} rank(s) (rank 0 simulated), {spec.device}, "
             f"{spec.dtype}, batch {spec.batch_size} x {spec.seq_len}")
    table = Table(title=title, header_style="bold")
    table.add_column("per rank at the peak")
    table.add_column("GiB", justify="right")
    for name, value in sim.breakdown.items():
        table.add_row(name, f"{value / GIB:,.3f}")
    table.add_row("peak (allocator)", f"{sim.peak_bytes / GIB:,.3f}")
    table.add_row("device total", f"{sim.device_bytes / GIB:,.3f}")
    console().print(table)
    print_fits(out)
    print(f"simulated in {sim.seconds:.1f} s, {sim.rss_peak_bytes / 2**20:,.0f} MiB RSS")


def add_parser(sub: Any, spec_flags: Any) -> None:
    p = sub.add_parser("simulate", help="run the real step under fake tensors and a fake process group")
    spec_flags(p, sweep=False)
    add_fit_flags(p)


def cmd_simulate(args: argparse.Namespace) -> int:
    return run_figures(args, result, print_simulation)


def simulated_peak(spec: RunSpec, device: str) -> tuple[int | None, str | None]:
    """(peak bytes, None) from a process of its own, or (None, why) when it cannot be simulated or failed."""
    cmd = [sys.executable, "-m", "harness.simulate_cli", "--spec", spec.to_json(), "--device", device]
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
    parser = argparse.ArgumentParser(prog="harness.simulate_cli")
    parser.add_argument("--spec", required=True, help="RunSpec as JSON")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="the target to account for")
    args = parser.parse_args(argv)
    try:
        sim = simulate(RunSpec.from_json(args.spec), args.device)
    except Unsupported as why:
        print(f"unsupported: {why}", file=sys.stderr)
        return 3
    print(json.dumps(sim.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
