"""Build `benchmarks/results/accuracy-cpu.json` from stores holding `spacetime sweep --preset accuracy` runs:
every measured case with its per-rank peaks over all repeats, and the predicted and simulated peaks of the
same spec, computed here.  tests/accuracy/test_accuracy.py holds them to 5% and 1%; `--table` prints the
summary docs/accuracy.md shows.

    spacetime sweep --preset accuracy --store A            # the matrix (tiny and 125m)
    spacetime sweep --preset accuracy --models tiny --store B   # tiny again: a second sample per case
    spacetime sweep --preset accuracy --models tiny --strategies tp --store C   # tp: a third
    spacetime run --model 125m --nproc 2 --seq-len 64 --dtype bf16 --warmup 1 --steps 1 --store D \
        --strategy S --batch-size B ...   # 125m bf16 cases one by one (4 x 64 global; 8-10 min each on CPU)
    spacetime run --nproc 2 --batch-size 2 --seq-len 64 --warmup 1 --steps 1 --store E \
        --strategy zero2 ...              # DeepSpeed ZeRO cases, the same shapes (predicted only),
                                          # some with --grad-accum 2
    python -m benchmarks.accuracy A B C D E                # -> benchmarks/results/accuracy-cpu.json
    python -m benchmarks.accuracy --reuse-simulated A B C D E  # keep the file's simulated figures (same code)
    python -m benchmarks.accuracy --table                  # the summary table, from the file

The reference of a case is the smallest per-rank peak over its ranks and repeats.  Every rank of these
layouts runs the same shapes, so each is a sample of one program's peak; they differ only when gloo's worker
thread lets go of a finished collective's buffers after the training thread allocated its next tensor (the
worker holds the work until it re-takes its lock), which can only add.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from benchmarks.matrix_file import write_matrix
from harness.core.units import MIB

OUT = Path(__file__).parent / "results" / "accuracy-cpu.json"
SPEC_KEYS = ("model", "strategy", "nproc", "batch_size", "seq_len", "dtype", "activation_checkpointing",
             "lora_rank")


def case_id(spec: dict[str, Any]) -> str:
    knobs = [spec["dtype"], f"ckpt-{spec['activation_checkpointing']}", f"lora{spec['lora_rank']}"]
    if spec.get("grad_accum", 1) > 1:
        knobs.append(f"accum{spec['grad_accum']}")
    return "-".join([spec["model"], spec["strategy"], *knobs])


def gather(stores: list[Path]) -> dict[str, dict[str, Any]]:
    from harness.run.store import rows

    cases: dict[str, dict[str, Any]] = {}
    for store in stores:
        for row in rows(store):
            if row["status"] != "ok":
                continue
            spec = {k: row[k] for k in SPEC_KEYS}
            if row["grad_accum"] > 1:  # named only where it is used, so the other cases keep their specs
                spec["grad_accum"] = row["grad_accum"]
            case = cases.setdefault(case_id(spec), {"spec": spec, "measured_per_rank": []})
            case["measured_per_rank"].append(row["peak_bytes_per_rank"])
            case["device_name"] = row["device_name"]
    return cases


def add_figures(case: dict[str, Any], simulated: int | None = None) -> None:
    from harness.core.record import Record
    from harness.core.spec import RunSpec
    from harness.run.annotate import predicted_peak
    from harness.run.validate import validate
    from harness.simulate.runner import simulate
    from strategies import get_strategy

    names = {f.name for f in fields(RunSpec)}
    spec = validate(RunSpec(**{k: v for k, v in case["spec"].items() if k in names}, device="cpu"), measure=False)
    case["reference_bytes"] = min(min(ranks) for ranks in case["measured_per_rank"])
    case["predicted_bytes"] = predicted_peak(Record(spec, "ok"))
    if get_strategy(spec.strategy).simulate_why_not:  # DeepSpeed: predicted and measured only
        case["simulated_bytes"] = None
        return
    case["simulated_bytes"] = simulated if simulated is not None else simulate(spec, "cpu").peak_bytes


GROUPS = (("predicted", "core strategies", 0.05), ("predicted", "DeepSpeed ZeRO", 0.05), ("predicted", "FSDP1", 0.05),
          ("simulated", "core strategies", 0.01), ("simulated", "FSDP1", 0.01))


def _family(strategy: str) -> str:
    return "DeepSpeed ZeRO" if strategy.startswith("zero") else "FSDP1" if strategy.startswith("fsdp1") else (
        "core strategies")


def _label(spec: dict[str, Any]) -> str:
    knobs = [spec["dtype"]] + (["checkpointing"] if spec["activation_checkpointing"] != "off" else []) + (
        ["LoRA"] if spec["lora_rank"] else []) + ([f"accum {spec['grad_accum']}"] if spec.get("grad_accum") else [])
    return f"{spec['model']} {spec['strategy']} " + " + ".join(knobs)


def summary_table(cases: dict[str, dict[str, Any]]) -> str:
    """The accuracy table docs/accuracy.md shows, from the recorded cases: predictions made now (the model as
    it is), simulations as recorded (tests re-run a sample)."""
    from harness.core.record import Record
    from harness.core.spec import RunSpec
    from harness.run.annotate import predicted_peak
    from harness.run.validate import validate

    lines = ["| | cases | median error | within bound | worst |", "|---|---:|---:|---:|---|"]
    for kind, family, bound in GROUPS:
        errors = []
        for case in cases.values():
            spec = case["spec"]
            if _family(spec["strategy"]) != family:
                continue
            if kind == "predicted":
                figure = predicted_peak(Record(validate(RunSpec(**spec, device="cpu"), measure=False), "ok"))
            else:
                figure = case["simulated_bytes"]
            if figure is not None:
                errors.append((figure / case["reference_bytes"] - 1, _label(spec)))
        worst = max(errors, key=lambda e: abs(e[0]))
        median = statistics.median(abs(e) for e, _ in errors)
        within = sum(abs(e) <= bound for e, _ in errors)
        lines.append(f"| {kind}, {family} (bound {bound:.0%}) | {len(errors)} | {median:.2%} | "
                     f"{within} of {len(errors)} | {worst[0]:+.2%} {worst[1]} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv == ["--table"]:
        print(summary_table(json.loads(OUT.read_text())["cases"]))
        return 0
    reuse = "--reuse-simulated" in argv
    cases = gather([Path(a) for a in argv if a != "--reuse-simulated"])
    old = json.loads(OUT.read_text())["cases"] if reuse and OUT.exists() else {}
    for i, (name, case) in enumerate(sorted(cases.items())):
        same = old.get(name, {}).get("spec") == case["spec"]
        add_figures(case, old[name]["simulated_bytes"] if same else None)
        simulated = case["simulated_bytes"]
        print(f"[{i + 1}/{len(cases)}] {name}: reference {case['reference_bytes'] / MIB:.2f} MiB, "
              f"predicted {case['predicted_bytes'] / case['reference_bytes'] - 1:+.2%}, simulated "
              + (f"{simulated / case['reference_bytes'] - 1:+.2%}" if simulated else "-"), flush=True)
    write_matrix(OUT, cases)
    print(f"wrote {OUT} ({len(cases)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
