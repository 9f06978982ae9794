"""Build `benchmarks/results/cp-accuracy-cpu.json`: context parallelism (cp, fsdp_cp; ring attention on the CPU
through harness/train/cpu_ring_attention.py) measured on the CPU, to set beside `estimate`'s peak.
tests/accuracy/test_cp_accuracy.py predicts every case live and holds it to 5%.  `simulate` does not run
context parallelism (the strategies say why), so the file has no simulated figure.

    python -m benchmarks.cp_accuracy [--repeats N]    # measures every case
    python -m benchmarks.cp_accuracy --table          # the file's cases beside today's predictions

A case's reference is its smallest per-rank peak over ranks and repeats, as in benchmarks/accuracy.py: gloo's
worker thread frees the ring's finished sends and receives late now and then, which can only add.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.matrix_file import write_matrix

OUT = Path(__file__).parent / "results" / "cp-accuracy-cpu.json"
CASES: tuple[dict[str, Any], ...] = (
    {"strategy": "cp", "nproc": 2, "batch_size": 4, "seq_len": 64, "activation_checkpointing": "off"},
    {"strategy": "cp", "nproc": 2, "batch_size": 2, "seq_len": 128, "activation_checkpointing": "off"},
    {"strategy": "cp", "nproc": 2, "batch_size": 4, "seq_len": 64, "activation_checkpointing": "full"},
    {"strategy": "fsdp_cp", "nproc": 4, "batch_size": 2, "seq_len": 64, "activation_checkpointing": "off"},
)


def case_id(case: dict[str, Any]) -> str:
    return (f"{case['strategy']}-n{case['nproc']}-{case['batch_size']}x{case['seq_len']}"
            f"-ckpt-{case['activation_checkpointing']}")


def spec_of(case: dict[str, Any], measured: bool = False) -> Any:
    from harness.core.spec import RunSpec
    from harness.run.validate import validate

    spec = RunSpec(model="tiny", dtype="fp32", device="cpu", warmup=1, steps=1, **case)
    return validate(spec) if measured else validate(spec, measure=False)


def predicted(case: dict[str, Any]) -> int:
    from harness.core.record import Record
    from harness.run.annotate import predicted_peak

    figure = predicted_peak(Record(spec_of(case), "ok"))
    assert figure is not None
    return figure


def measure(repeats: int) -> dict[str, dict[str, Any]]:
    from harness.run.sweep import run_sweep

    out: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for case in CASES:
            record = run_sweep([spec_of(case, measured=True)], store_path=None, show_progress=False)[0]
            if record.status != "ok":
                raise SystemExit(f"{case_id(case)}: {record.status}: {record.error}")
            entry = out.setdefault(case_id(case), {"spec": case, "measured_per_rank": [],
                                                   "device_name": record.to_row().get("device_name")})
            entry["measured_per_rank"].append(record.peak_bytes_per_rank)
            print(case_id(case), record.peak_bytes_per_rank, flush=True)
    for entry in out.values():
        entry["reference_bytes"] = min(min(ranks) for ranks in entry["measured_per_rank"])
    return out


def table() -> str:
    cases = json.loads(OUT.read_text())["cases"]
    lines = []
    for name, case in cases.items():
        figure = predicted(case["spec"])
        lines.append(f"{name:32} measured {case['reference_bytes']:>12,}  predicted {figure:>12,}  "
                     f"{figure / case['reference_bytes'] - 1:+.2%}")
    return "\n".join(lines)


if __name__ == "__main__":
    if "--table" in sys.argv:
        print(table())
    else:
        repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 2
        write_matrix(OUT, measure(repeats))
