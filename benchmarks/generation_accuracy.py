"""Build `benchmarks/results/generation-accuracy-cpu.json`: the generate workload measured on the CPU over a
matrix of cases (strategy x dtype x cache kind x beams x batch/context, and the quantized loads), each case's
load, prefill and decode peaks and KV cache bytes as `spacetime run --workload generate --json` records them.
tests/accuracy/test_generation_accuracy.py holds the estimate (harness/estimate/generation.py) to them, and the
simulated figures (`spacetime simulate --workload generate --device cpu --json`, stored as each case's
`simulated`) to them.

    python -m benchmarks.generation_accuracy              # every case (about a minute each on 2 cores)
    python -m benchmarks.generation_accuracy --only N     # the cases whose name contains N, merged into the file
    python -m benchmarks.generation_accuracy --simulated  # simulate every case again; the measured figures stay
    python -m benchmarks.generation_accuracy --table      # the summary, from the file

A case's figures are the record's: each the largest over the ranks, which here all run one shape.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.core.host import cpu_model

OUT = Path(__file__).parent / "results" / "generation-accuracy-cpu.json"
FIGURES = ("load_bytes", "prefill_peak_bytes", "decode_peak_bytes", "kv_cache_bytes")
SPEC_KEYS = ("model", "strategy", "nproc", "batch_size", "prompt_len", "new_tokens", "num_beams", "kv_cache",
             "dtype", "quant")


def _case(model: str, strategy: str, dtype: str, cache: str, beams: int, batch: int, prompt: int, new: int,
          quant: str = "none") -> dict[str, Any]:
    return {"model": model, "strategy": strategy, "nproc": 1 if strategy == "single" else 2, "batch_size": batch,
            "prompt_len": prompt, "new_tokens": new, "num_beams": beams, "kv_cache": cache, "dtype": dtype,
            "quant": quant}


def cases() -> dict[str, dict[str, Any]]:
    """Every strategy that generates x {fp32, bf16} x {static, dynamic} x {greedy, 2 beams} on tiny, the
    batch/context alternating between two shapes; then 125m and the quantized loads on single (bitsandbytes'
    int8 and nf4, torchao's weight-only int8 and NF4Tensor)."""
    out: dict[str, dict[str, Any]] = {}
    for strategy in ("single", "ddp", "fsdp_full_shard", "zero3"):
        for dtype in ("fp32", "bf16"):
            for cache in ("static", "dynamic"):
                for beams in (1, 2):
                    batch, prompt, new = (2, 64, 8) if (beams == 1) == (cache == "static") else (4, 128, 16)
                    out[f"tiny-{strategy}-{dtype}-{cache}-b{beams}-{batch}x{prompt}+{new}"] = _case(
                        "tiny", strategy, dtype, cache, beams, batch, prompt, new)
    for strategy in ("single", "fsdp_full_shard", "zero3"):
        out[f"125m-{strategy}-fp32-dynamic-b2-2x128+16"] = _case("125m", strategy, "fp32", "dynamic", 2, 2, 128, 16)
    for quant in ("int8", "nf4", "int8-torchao", "nf4-torchao"):
        for dtype in ("fp32", "bf16"):
            out[f"tiny-single-{dtype}-{quant}-static-b1-2x64+8"] = _case("tiny", "single", dtype, "static", 1, 2,
                                                                        64, 8, quant)
    return out


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One case through the CLI, as a user runs it; its record's figures."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in spec.items()]
    cmd = [sys.executable, "-m", "harness.cli", "run", "--workload", "generate", "--device", "cpu", *flags,
           "--json", "--no-store"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    if record.get("status") != "ok":
        raise RuntimeError(f"{' '.join(cmd)}: {record.get('status')} {record.get('error')}")
    return {key: record[key] for key in FIGURES}


def simulated(spec: dict[str, Any]) -> dict[str, Any]:
    """One case through `spacetime simulate --workload generate`, as a user runs it: its figures."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in spec.items()]
    cmd = [sys.executable, "-m", "harness.cli", "simulate", "--workload", "generate", "--device", "cpu", *flags,
           "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        return {"not_simulated": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return {key: json.loads(proc.stdout.strip().splitlines()[-1])[key] for key in FIGURES}


def build_simulated(only: str | None) -> None:
    """Each case's `simulated` figures (or why it is not simulated), beside the measured ones already there."""
    data = json.loads(OUT.read_text())
    for name, case in sorted(data["cases"].items()):
        if only and only not in name:
            continue
        print(name, flush=True)
        case["simulated"] = simulated(case["spec"])
        OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def build(only: str | None) -> None:
    data = json.loads(OUT.read_text()) if OUT.exists() else {"cases": {}}
    data.update(machine=f"{cpu_model()}, gloo ({platform.machine()})", date=time.strftime("%Y-%m-%d", time.gmtime()),
                reference="the record of `spacetime run --workload generate --json`: each figure the largest "
                "over ranks (CPU counting allocator)")
    import torch

    data["torch"] = torch.__version__
    for name, spec in cases().items():
        if only and only not in name:
            continue
        print(name, flush=True)
        data["cases"][name] = {**data["cases"].get(name, {}), "spec": spec, "measured": measure(spec)}
        OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def table() -> None:
    from harness.core.spec import RunSpec
    from harness.estimate.generation import predict_generation

    for name, case in sorted(json.loads(OUT.read_text())["cases"].items()):
        spec = RunSpec(**case["spec"], workload="generate", device="cpu")
        predicted = predict_generation(spec, "cpu").to_json()
        errors = " ".join(f"{key.split('_')[0]} {predicted[key] / case['measured'][key] - 1:+.2%}"
                          for key in FIGURES)
        sim = case.get("simulated", {})
        simulated = " ".join(f"{key.split('_')[0]} {sim[key] / case['measured'][key] - 1:+.2%}"
                             for key in FIGURES if key in sim) or sim.get("not_simulated", "")
        print(f"{name:48} estimate {errors} | simulate {simulated}")


if __name__ == "__main__":
    ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    if "--table" in sys.argv:
        table()
    elif "--simulated" in sys.argv:
        build_simulated(ONLY)
    else:
        build(ONLY)
