"""What `--compile` does to the peak and the step time on this CPU: off, blocks and model, run alternately, into a
store, then `benchmarks/results/compile-cpu.md` from the stores.

    python -m benchmarks.compile_cpu run STORE [--repeats N] [--cases tiny-single,125m-single,...]
    python -m benchmarks.compile_cpu table STORE [STORE ...]

Each case runs off, blocks, model, then again (`--repeats`), so load that drifts over the session falls on every
mode alike.  The table gives, per case and mode, the smallest peak over repeats (the CPU allocator's), the median
of the runs' median step times, and the run's whole wall time, whose excess over `off` is mostly compilation
(in the warmup step: neither the memory step nor the timed steps see it).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.core.units import MIB

OUT = Path(__file__).parent / "results" / "compile-cpu.md"
MODES = ("off", "blocks", "model")
# name -> (model, strategy, ranks, per-rank batch, sequence)
CASES: dict[str, tuple[str, str, int, int, int]] = {
    "tiny-single": ("tiny", "single", 1, 8, 256),
    "tiny-fsdp": ("tiny", "fsdp_full_shard", 2, 4, 256),
    "125m-single": ("125m", "single", 1, 2, 256),
    "125m-fsdp": ("125m", "fsdp_full_shard", 2, 1, 256),
}


def specs(cases: list[str], repeats: int) -> list[Any]:
    from harness.core.spec import RunSpec

    out = []
    for _ in range(repeats):
        for name in cases:
            model, strategy, nproc, batch, seq = CASES[name]
            base = RunSpec(model=model, strategy=strategy, nproc=nproc, batch_size=batch, seq_len=seq, warmup=1,
                           memory_steps=1, steps=3, device="cpu", timeout_s=1800.0)
            out += [base.with_(compile=mode) for mode in MODES]
    return out


def run(store: Path, cases: list[str], repeats: int) -> int:
    from harness.run.sweep import run_sweep

    records = run_sweep(specs(cases, repeats), store_path=store, show_progress=True)
    bad = [r for r in records if r.status != "ok"]
    for r in bad:
        print(f"{r.spec.model} {r.spec.strategy} compile={r.spec.compile}: {r.status}: {r.error}", file=sys.stderr)
    return 1 if bad else 0


def _delta(now: float, before: float | None) -> str:
    return "" if not before else f" ({now / before - 1:+.0%})"


def table(stores: list[Path]) -> str:
    from harness.run.store import rows

    runs: dict[tuple[str, str, int, str], list[dict[str, Any]]] = defaultdict(list)
    machine = torch = ""
    for store in stores:
        for row in rows(store):
            if row["status"] == "ok" and row.get("workload", "train") == "train":
                runs[(row["model"], row["strategy"], row["nproc"], row["compile"])].append(row)
                machine, torch = row["device_name"], row["torch_version"]
    lines = [f"Machine: {machine}, {platform.machine()}, 2 cores shared with other work (load average 15-20 while "
             f"these ran: step times are rough, peaks are exact); torch {torch}, Inductor's C++ backend.", "",
             "| model | strategy | ranks | compile | runs | peak MiB (vs off) | s/step p50 (vs off) | run wall s |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for key in sorted({k[:3] for k in runs}):
        off = runs.get((*key, "off"))
        base_peak = min(r["peak_bytes"] for r in off) if off else None
        base_step = statistics.median(r["step_s_p50"] for r in off) if off else None
        for mode in MODES:
            got = runs.get((*key, mode))
            if not got:
                continue
            peak, step = min(r["peak_bytes"] for r in got), statistics.median(r["step_s_p50"] for r in got)
            wall = statistics.median(r["wall_s"] for r in got)
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {mode} | {len(got)} | {peak / MIB:,.1f}"
                         f"{_delta(peak, base_peak)} | {step:.2f}{_delta(step, base_step)} | {wall:.0f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.compile_cpu")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("store", type=Path)
    r.add_argument("--repeats", type=int, default=2)
    r.add_argument("--cases", default=",".join(CASES))
    t = sub.add_parser("table")
    t.add_argument("stores", type=Path, nargs="+")
    args = p.parse_args(argv)
    if args.command == "run":
        return run(args.store, args.cases.split(","), args.repeats)
    print(table(args.stores))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
