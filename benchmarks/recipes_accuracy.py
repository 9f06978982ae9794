"""Build `benchmarks/results/accuracy-recipes-cpu.json`: measured cases of the recipe knobs (loss, compile,
op-level checkpointing, quantized bases, and whatever knob a case sets off its default), each with the
predicted and simulated peak of the same spec, or the reason it is not modelled.  tests/accuracy/
test_recipes_accuracy.py holds them to 5% (predicted) and 1% (simulated).

    spacetime run --model tiny --nproc 2 --strategy fsdp_full_shard --loss chunked --store S ...
    python -m benchmarks.recipes_accuracy add S [S2 ...]   # merge the stores' ok records into the file
    python -m benchmarks.recipes_accuracy --table          # the summary, from the file
    python -m benchmarks.recipes_accuracy --resimulate quant  # simulate again the cases setting that knob

A case is named by its model, strategy, ranks and every knob off its default, so records of one spec from
several stores (repeats) are one case.  Its reference, as in benchmarks/accuracy.py, is the smallest
per-rank peak over ranks and repeats.  Adding a store keeps the cases already in the file.
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

OUT = Path(__file__).parent / "results" / "accuracy-recipes-cpu.json"
ALWAYS = ("model", "strategy", "nproc", "batch_size", "seq_len")  # named in every case's spec
# not part of what a case is: how it was run and timed, not what it holds
IGNORED = ("device", "seed", "timeout_s", "steps", "warmup", "memory_steps", "lr", "nnodes")


def case_spec(row: dict[str, Any]) -> dict[str, Any]:
    """The record's spec: the fields every case names, then each other field off its default."""
    from harness.core.spec import RunSpec

    spec = {k: row[k] for k in ALWAYS}
    for f in fields(RunSpec):
        if f.name not in ALWAYS and f.name not in IGNORED and row.get(f.name, f.default) != f.default:
            spec[f.name] = row[f.name]
    return spec


def case_id(spec: dict[str, Any]) -> str:
    knobs = [f"{k}={v}" for k, v in spec.items() if k not in ALWAYS]
    head = [spec["model"], spec["strategy"], f"n{spec['nproc']}", f"{spec['batch_size']}x{spec['seq_len']}"]
    return "-".join(head + knobs)


def gather(stores: list[Path], cases: dict[str, dict[str, Any]]) -> list[str]:
    """Add every ok record of the stores to `cases`; returns the names of the cases that gained a sample."""
    from harness.run.store import rows

    touched = []
    for store in stores:
        for row in rows(store):
            if row["status"] != "ok" or row.get("workload", "train") != "train":
                continue
            spec = case_spec(row)
            name = case_id(spec)
            case = cases.setdefault(name, {"spec": spec, "measured_per_rank": []})
            case["measured_per_rank"].append(row["peak_bytes_per_rank"])
            case["device_name"] = row["device_name"]
            touched.append(name)
    return sorted(set(touched))


def figures(spec_fields: dict[str, Any]) -> dict[str, Any]:
    """Predicted and simulated peaks of the spec, each with None and the reason where there is none."""
    from harness.core.errors import NotModelled, Unsupported
    from harness.core.record import Record
    from harness.core.spec import RunSpec
    from harness.run.annotate import predicted_peak
    from harness.run.validate import validate
    from harness.simulate.runner import simulate

    spec = validate(RunSpec(**spec_fields, device="cpu"), measure=False)
    out: dict[str, Any] = {}
    try:
        out["predicted_bytes"], out["predicted_why_not"] = predicted_peak(Record(spec, "ok"), strict=True), None
    except NotModelled as why:
        out["predicted_bytes"], out["predicted_why_not"] = None, str(why)
    try:
        out["simulated_bytes"], out["simulated_why_not"] = simulate(spec, "cpu").peak_bytes, None
    except (NotModelled, Unsupported) as why:
        out["simulated_bytes"], out["simulated_why_not"] = None, str(why)
    return out


def error(figure: int | None, case: dict[str, Any]) -> float | None:
    return None if figure is None else figure / case["reference_bytes"] - 1


def summary_table(cases: dict[str, dict[str, Any]]) -> str:
    lines = ["| case | reference MiB | predicted | simulated |", "|---|---:|---:|---:|"]
    for name, case in sorted(cases.items()):
        cells = []
        for kind in ("predicted", "simulated"):
            e = error(case[f"{kind}_bytes"], case)
            cells.append(f"{e:+.2%}" if e is not None else f"not modelled: {case[f'{kind}_why_not']}")
        lines.append(f"| {name} | {case['reference_bytes'] / MIB:.2f} | {cells[0]} | {cells[1]} |")
    for kind, bound in (("predicted", 0.05), ("simulated", 0.01)):
        errors = [abs(e) for c in cases.values() if (e := error(c[f"{kind}_bytes"], c)) is not None]
        if errors:
            lines.append(f"\n{kind}: {len(errors)} cases, median {statistics.median(errors):.2%}, "
                         f"worst {max(errors):.2%}, {sum(e <= bound for e in errors)} within {bound:.0%}")
    return "\n".join(lines)


def add(stores: list[Path]) -> int:
    old = json.loads(OUT.read_text()) if OUT.exists() else {"cases": {}}
    cases: dict[str, dict[str, Any]] = old["cases"]
    touched = gather(stores, cases)
    for i, name in enumerate(touched):
        case = cases[name]
        case["reference_bytes"] = min(min(ranks) for ranks in case["measured_per_rank"])
        case.update(figures(case["spec"]))
        p, s = error(case["predicted_bytes"], case), error(case["simulated_bytes"], case)
        print(f"[{i + 1}/{len(touched)}] {name}: reference {case['reference_bytes'] / MIB:.2f} MiB, predicted "
              f"{'-' if p is None else f'{p:+.2%}'}, simulated {'-' if s is None else f'{s:+.2%}'}", flush=True)
    write_matrix(OUT, cases)
    print(f"wrote {OUT} ({len(cases)} cases, {len(touched)} added or updated)")
    return 0


def resimulate(knob: str) -> int:
    """Simulate again every case whose spec sets `knob`; the measured and predicted figures stay."""
    from harness.core.errors import NotModelled, Unsupported
    from harness.core.spec import RunSpec
    from harness.run.validate import validate
    from harness.simulate.runner import simulate

    data = json.loads(OUT.read_text())
    names = [name for name, case in data["cases"].items() if knob in case["spec"]]
    for i, name in enumerate(names):
        case = data["cases"][name]
        spec = validate(RunSpec(**case["spec"], device="cpu"), measure=False)
        try:
            case["simulated_bytes"], case["simulated_why_not"] = simulate(spec, "cpu").peak_bytes, None
        except (NotModelled, Unsupported) as why:
            case["simulated_bytes"], case["simulated_why_not"] = None, str(why)
        s = error(case["simulated_bytes"], case)
        print(f"[{i + 1}/{len(names)}] {name}: simulated {'-' if s is None else f'{s:+.2%}'}", flush=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--table"]:
        print(summary_table(json.loads(OUT.read_text())["cases"]))
        return 0
    if len(argv) == 2 and argv[0] == "--resimulate":
        return resimulate(argv[1])
    if len(argv) >= 2 and argv[0] == "add":
        return add([Path(a) for a in argv[1:]])
    print("usage: python -m benchmarks.recipes_accuracy add STORE [STORE ...] | --table | --resimulate KNOB",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
