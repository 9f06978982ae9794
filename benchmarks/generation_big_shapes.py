"""Build `benchmarks/results/generation-estimate-vs-simulate.json` (and its .md table): `spacetime estimate
--workload generate` beside `spacetime simulate --workload generate` for the big shapes no machine here can
measure: 7b, 8b, 13b and 70b in bf16, int8 and nf4 (7b and 8b in torchao's int8, NF4 and int4 too), and the
families' shapes in bf16 (Gemma 2's softcapped attention, Phi-3's window shorter than the sequence, ...), one
rank, batch 1, 2048 prompt + 256 new tokens, greedy, a static cache, a CUDA target (both add the CUDA context;
the figures compared are the allocator's).
tests/accuracy/test_generation_big_shapes.py holds the estimate to the stored simulated figures.

    python -m benchmarks.generation_big_shapes           # every case (simulate: a few seconds to a minute each)
    python -m benchmarks.generation_big_shapes --only N  # the cases whose name contains N, merged into the file
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "generation-estimate-vs-simulate.json"
FIGURES = ("load_bytes", "prefill_peak_bytes", "decode_peak_bytes", "kv_cache_bytes")
TORCHAO = ("int8-torchao", "nf4-torchao", "int4-torchao")
FAMILIES = ("mistral-7b", "qwen2.5-7b", "qwen3-8b", "gemma-7b", "gemma2-9b", "phi3-mini")
SHAPE = {"strategy": "single", "nproc": 1, "batch_size": 1, "prompt_len": 2048, "new_tokens": 256, "num_beams": 1,
         "kv_cache": "static"}


def cases() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for model in ("7b", "8b", "13b", "70b"):
        for quant in ("none", "int8", "nf4"):
            out[f"{model}-bf16{'' if quant == 'none' else '-' + quant}"] = {
                "model": model, "dtype": "bf16", "quant": quant, **SHAPE}
    for model in ("7b", "8b"):  # torchao's: int8 and NF4 simulated, int4 (CUDA only) estimated
        for quant in TORCHAO:
            out[f"{model}-bf16-{quant}"] = {"model": model, "dtype": "bf16", "quant": quant, **SHAPE}
    for model in FAMILIES:
        out[f"{model}-bf16"] = {"model": model, "dtype": "bf16", "quant": "none", **SHAPE}
    return out


def _cli(command: str, spec: dict[str, Any]) -> tuple[dict[str, Any] | None, str, float]:
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in spec.items()]
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", command, "--workload", "generate", *flags, "--json"],
                          capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    if proc.returncode:
        return None, (proc.stderr.strip().splitlines() or ["no output"])[-1], seconds
    return json.loads(proc.stdout.strip().splitlines()[-1]), "", seconds


def build(only: str | None) -> None:
    data = json.loads(OUT.read_text()) if OUT.exists() else {"cases": {}}
    import torch

    data.update(date=time.strftime("%Y-%m-%d", time.gmtime()), torch=torch.__version__, target="cuda",
                reference="spacetime simulate --workload generate --json (rank 0 under fake tensors)")
    for name, spec in cases().items():
        if only and only not in name:
            continue
        print(name, flush=True)
        estimated, why, _ = _cli("estimate", spec)
        simulated, why_not, seconds = _cli("simulate", spec)
        case: dict[str, Any] = {"spec": spec, "estimated": {k: estimated[k] for k in FIGURES} if estimated else why}
        case["simulated"] = ({k: simulated[k] for k in FIGURES} | {"seconds": round(seconds, 1)} if simulated
                             else {"not_simulated": why_not})
        data["cases"][name] = case
        OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    OUT.with_suffix(".md").write_text(table(data))


def table(data: dict[str, Any]) -> str:
    """A markdown table: per case, estimated and simulated GiB per phase and the estimate's error."""
    lines = ["# estimate against simulate, generation on one rank (CUDA target)", "",
             f"batch 1, 2048 + 256 tokens, greedy, static cache; torch {data['torch']}, {data['date']}; "
             "`python -m benchmarks.generation_big_shapes`. GiB, allocator figures (no CUDA context).", "",
             "| case | load est / sim | prefill est / sim | decode est / sim | KV cache | estimate off by |",
             "|---|---:|---:|---:|---:|---|"]
    for name, case in data["cases"].items():
        est, sim = case["estimated"], case["simulated"]
        if "not_simulated" in sim:
            lines.append(f"| {name} | {est['load_bytes'] / 2**30:.2f} / - | {est['prefill_peak_bytes'] / 2**30:.2f} "
                         f"/ - | {est['decode_peak_bytes'] / 2**30:.2f} / - | {est['kv_cache_bytes'] / 2**30:.3f} | "
                         f"not simulated: {sim['not_simulated'].removeprefix('spacetime: unsupported: ')} |")
            continue
        cells = [f"{est[k] / 2**30:.2f} / {sim[k] / 2**30:.2f}" for k in FIGURES[:3]]
        off = ", ".join(f"{k.split('_')[0]} {est[k] / sim[k] - 1:+.2%}" for k in FIGURES[:3])
        lines.append(f"| {name} | {' | '.join(cells)} | {sim['kv_cache_bytes'] / 2**30:.3f} | {off} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    build(sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None)
