"""Build `benchmarks/results/tp-accuracy-cpu.json`: the tensor-parallel variants (plain TP, sequence parallelism,
loss parallelism, both, and under FSDP2) measured on the CPU, each beside its predicted and simulated peak.
tests/accuracy/test_tp_accuracy.py holds them to 5% and 1%, and holds the saving sequence and loss parallelism
measure against plain TP to the saving predicted.

    python -m benchmarks.tp_accuracy [--repeats N] [--models tiny,125m]   # measures, predicts, simulates
    python -m benchmarks.tp_accuracy --table                              # the summary, from the file

Every case runs the smoke preset's global batch (4 sequences of 64 tokens) with one warmup and one memory step.
A case's reference is its smallest per-rank peak over ranks and repeats, as in benchmarks/accuracy.py.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "tp-accuracy-cpu.json"
VARIANTS = (("tp", False), ("tp_sp", False), ("tp", True), ("tp_sp", True))  # (strategy, loss parallel)
KNOBS = (("fp32", "off"), ("bf16", "off"), ("fp32", "full"))  # (dtype, activation checkpointing) on tiny
FSDP_VARIANTS = (("fsdp_tp_sp", False), ("fsdp_tp", True), ("fsdp_tp_sp", True))  # 4 ranks: dp 2 x tp 2


def case_id(spec: dict[str, Any]) -> str:
    lp = "-lp" if spec["loss_parallel"] else ""
    knobs = f"{spec['dtype']}-ckpt-{spec['activation_checkpointing']}"
    return f"{spec['model']}-{spec['strategy']}{lp}-{spec['nproc']}r-{knobs}"


def planned(models: list[str]) -> list[dict[str, Any]]:
    """The matrix's specs as RunSpec fields."""
    cases = []
    for model in models:
        knobs = KNOBS if model == "tiny" else KNOBS[:1]  # 125m: fp32 only (16-bit GEMMs crawl on these CPUs)
        for (dtype, ckpt) in knobs:
            for strategy, lp in VARIANTS:
                cases.append({"model": model, "strategy": strategy, "nproc": 2, "batch_size": 4, "dtype": dtype,
                              "activation_checkpointing": ckpt, "loss_parallel": lp})
    cases += [{"model": "tiny", "strategy": strategy, "nproc": 4, "batch_size": 2, "dtype": "fp32",
               "activation_checkpointing": "off", "loss_parallel": lp} for strategy, lp in FSDP_VARIANTS]
    return [{**c, "seq_len": 64} for c in cases]


def _spec(fields: dict[str, Any], measured: bool) -> Any:
    from harness.core.spec import RunSpec
    from harness.run.validate import validate

    spec = RunSpec(**fields, device="cpu", warmup=1, steps=1)
    return validate(spec) if measured else validate(spec, measure=False)


def measure(cases: list[dict[str, Any]], repeats: int) -> dict[str, dict[str, Any]]:
    from harness.run.sweep import run_sweep

    out: dict[str, dict[str, Any]] = {}
    for i, fields in enumerate(cases * repeats):
        record = run_sweep([_spec(fields, True)], store_path=None, show_progress=False)[0]
        if record.status != "ok":
            raise SystemExit(f"{case_id(fields)}: {record.status}: {record.error}")
        case = out.setdefault(case_id(fields), {"spec": fields, "measured_per_rank": []})
        case["measured_per_rank"].append(record.peak_bytes_per_rank)
        print(f"[{i + 1}/{len(cases) * repeats}] {case_id(fields)}: {record.peak_bytes_per_rank}", flush=True)
    return out


def add_figures(case: dict[str, Any]) -> None:
    from harness.core.record import Record
    from harness.run.annotate import predicted_peak
    from harness.simulate.runner import simulate

    spec = _spec(case["spec"], False)
    case["reference_bytes"] = min(min(ranks) for ranks in case["measured_per_rank"])
    case["predicted_bytes"] = predicted_peak(Record(spec, "ok"))
    case["simulated_bytes"] = simulate(spec, "cpu").peak_bytes


def summary(cases: dict[str, dict[str, Any]]) -> str:
    lines = ["| case | measured MiB | predicted | simulated |", "|---|---:|---:|---:|"]
    for name, case in cases.items():
        ref = case["reference_bytes"]
        lines.append(f"| {name} | {ref / 2**20:.2f} | {case['predicted_bytes'] / ref - 1:+.2%} | "
                     f"{case['simulated_bytes'] / ref - 1:+.2%} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv == ["--table"]:
        print(summary(json.loads(OUT.read_text())["cases"]))
        return 0
    repeats = int(argv[argv.index("--repeats") + 1]) if "--repeats" in argv else 2
    models = argv[argv.index("--models") + 1].split(",") if "--models" in argv else ["tiny", "125m"]
    cases = measure(planned(models), repeats)
    for name, case in sorted(cases.items()):
        add_figures(case)
        print(f"{name}: predicted {case['predicted_bytes'] / case['reference_bytes'] - 1:+.2%}, simulated "
              f"{case['simulated_bytes'] / case['reference_bytes'] - 1:+.2%}", flush=True)
    import torch

    from harness.core.host import cpu_model

    out: dict[str, Any] = {"machine": f"{cpu_model()}, gloo ({platform.machine()})", "torch": torch.__version__,
           "reference": "smallest per-rank peak over ranks and repeats (CPU counting allocator)",
           "cases": dict(sorted(cases.items()))}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(summary(out["cases"]))
    print(f"wrote {OUT} ({len(cases)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
