"""Build `benchmarks/results/pipeline-accuracy-cpu.json`: pipeline cases on `tiny` measured on this machine, each
pipeline rank's peak (the smallest over the ranks that hold the same stages: replicas and shards of it), to
set beside `estimate`'s and `simulate`'s per-stage figures (`--table` prints each stage's errors).

    python -m benchmarks.pipeline_accuracy            # measure every case (a few minutes per case on 2 cores)
    python -m benchmarks.pipeline_accuracy --table    # the file's cases beside today's predictions and simulations
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "pipeline-accuracy-cpu.json"
BASE: dict[str, Any] = {"model": "tiny", "seq_len": 32, "batch_size": 8}
CASES: tuple[dict[str, Any], ...] = (
    {"strategy": "pp_gpipe", "nproc": 2, "pp_microbatches": 2},
    {"strategy": "pp_gpipe", "nproc": 4, "pp_microbatches": 2},
    {"strategy": "pp_gpipe", "nproc": 4, "pp_microbatches": 4},
    {"strategy": "pp_gpipe", "nproc": 4, "pp_microbatches": 8},
    {"strategy": "pp_1f1b", "nproc": 2, "pp_microbatches": 4},
    {"strategy": "pp_1f1b", "nproc": 4, "pp_microbatches": 4},
    {"strategy": "pp_1f1b", "nproc": 4, "pp_microbatches": 8},
    {"strategy": "pp_interleaved", "nproc": 2, "pp_microbatches": 4},
    {"strategy": "pp_zb", "nproc": 2, "pp_microbatches": 2},
    {"strategy": "pp_zb", "nproc": 2, "pp_microbatches": 4},
    {"strategy": "pp_zb", "nproc": 4, "pp_microbatches": 4},  # 2 stages x 2 replicas
    {"strategy": "pp_zb", "nproc": 4, "pp_microbatches": 4, "pp_virtual": 1},  # 4 stages, one per rank
    {"strategy": "fsdp_pp", "nproc": 4, "pp_microbatches": 4},
)


def case_id(case: dict[str, Any]) -> str:
    virtual = f"-v{case['pp_virtual']}" if "pp_virtual" in case else ""
    return f"{case['strategy']}-n{case['nproc']}-m{case['pp_microbatches']}{virtual}"


def stage_peaks(peaks: list[int], pp: int) -> list[int]:
    """Each pipeline rank's peak: ranks are pp-major, so pipeline rank i holds ranks i x n/pp .. (i+1) x n/pp."""
    per = len(peaks) // pp
    return [min(peaks[i * per:(i + 1) * per]) for i in range(pp)]


def predicted(case: dict[str, Any]) -> list[int]:
    from harness.core.spec import RunSpec
    from harness.estimate.pipeline_memory import predict_stages
    from harness.run.validate import validate
    from strategies import get_strategy

    spec = validate(RunSpec(**BASE, **case, device="cpu"), measure=False)
    strategy: Any = get_strategy(spec.strategy)
    return [s.peak_bytes for s in predict_stages(spec, strategy.plan(spec))]


def simulated(case: dict[str, Any]) -> list[int]:
    """Each pipeline rank's simulated peak (`simulate`: one fake rank per pipeline rank); Unsupported where simulate
    refuses the strategy, with the reason."""
    from harness.core.spec import RunSpec
    from harness.run.validate import validate
    from harness.simulate.runner import simulate

    sim = simulate(validate(RunSpec(**BASE, **case, device="cpu"), measure=False), "cpu")
    return [b["peak_bytes"] for b in sim.to_json()["stages"]]


def measure() -> dict[str, Any]:
    from harness.core.spec import RunSpec
    from harness.run.sweep import run_sweep
    from harness.run.validate import validate
    from strategies import get_strategy

    specs = [validate(RunSpec(**BASE, **case, warmup=1, memory_steps=2, steps=2)) for case in CASES]
    cases: dict[str, Any] = {}
    env: dict[str, Any] = {}
    for case, record in zip(CASES, run_sweep(specs, None, show_progress=False), strict=True):
        assert record.status == "ok" and record.peak_bytes_per_rank, (case, record.error)
        pp = get_strategy(record.spec.strategy).layout(record.spec).pp
        cases[case_id(case)] = {"spec": {**BASE, **case}, "peak_bytes_per_rank": record.peak_bytes_per_rank,
                                "stage_peak_bytes": stage_peaks(record.peak_bytes_per_rank, pp)}
        env = {k: record.env.get(k) for k in ("torch_version", "device_name", "host")}
    return {"machine": {**env, "python": platform.python_version()}, "cases": cases}


def table(data: dict[str, Any]) -> None:
    from harness.core.errors import Unsupported

    for name, case in data["cases"].items():
        spec = {k: v for k, v in case["spec"].items() if k not in BASE}
        errors = [p / m - 1 for p, m in zip(predicted(spec), case["stage_peak_bytes"], strict=True)]
        try:
            sims = [f"{s / m - 1:+.2%}" for s, m in zip(simulated(spec), case["stage_peak_bytes"], strict=True)]
        except Unsupported:  # simulate refuses it, with the reason
            sims = ["refused"] * len(errors)
        print(f"{name:24} " + "  ".join(f"{m / 2**20:6.2f} MiB {e:+.1%} sim {s}"
                                         for m, e, s in zip(case["stage_peak_bytes"], errors, sims, strict=True)))


def main(argv: list[str]) -> int:
    if "--table" in argv:
        table(json.loads(OUT.read_text()))
        return 0
    OUT.write_text(json.dumps(measure(), indent=1) + "\n")
    table(json.loads(OUT.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
