"""`spacetime estimate`: the analytic per-rank memory of a spec (harness/predict.py), whether it fits a GPU,
the largest batch that fits, the load-only figure, and the source documents' arithmetic beside it."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from rich.table import Table

from harness.predict import QUANT_BYTES, Prediction, predict, weight_bytes
from harness.report import console
from harness.spec import RunSpec, SpecError, Unsupported
from harness.zoo import ModelConfig, config_for

GIB = 2**30
GB = 10**9
# Memory of each GPU as its vendor names it (GiB: "80GB" HBM is 80 GiB); the driver shows a little less.
GPUS: dict[str, int] = {
    "H200-141GB": 141 * GB, "H100-94GB": 94 * GB, "H100-80GB": 80 * GIB, "A100-80GB": 80 * GIB,
    "A100-40GB": 40 * GIB, "L40S-48GB": 48 * GIB, "A6000-48GB": 48 * GIB, "V100-32GB": 32 * GIB,
    "RTX4090-24GB": 24 * GIB, "RTX3090-24GB": 24 * GIB, "A10-24GB": 24 * GIB, "T4-16GB": 16 * GIB,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(GiB|GB|MiB|MB)?\s*$", re.IGNORECASE)
_UNITS = {"gib": GIB, "gb": GB, "mib": 2**20, "mb": 10**6, None: GIB}


def memory_limit(gpu: str | None, gpu_memory: str | None) -> tuple[str, int] | None:
    """(label, bytes) of the device to fit, from --gpu NAME or --gpu-memory SIZE (plain numbers are GiB)."""
    if gpu and gpu_memory:
        raise SpecError("gpu_memory", "give --gpu or --gpu-memory, not both")
    if gpu:
        names = {name.lower(): name for name in GPUS}
        if gpu.lower() not in names:
            raise SpecError("gpu", f"unknown GPU {gpu!r}", ", ".join(GPUS))
        return names[gpu.lower()], GPUS[names[gpu.lower()]]
    if gpu_memory:
        match = _SIZE.match(gpu_memory)
        if not match or float(match.group(1)) <= 0:
            raise SpecError("gpu_memory", f"expected a size like 80GiB or 24GB, got {gpu_memory!r}",
                            "NUMBER[GiB|GB|MiB|MB]")
        unit = match.group(2).lower() if match.group(2) else None
        return gpu_memory.strip(), int(float(match.group(1)) * _UNITS[unit])
    return None


def profile_for(spec: RunSpec) -> Any:
    from strategies import get_strategy

    profile = get_strategy(spec.strategy).memory_profile(spec)
    if profile is None:
        raise Unsupported(f"spacetime estimate has no memory model of {spec.strategy} yet; "
                          "measure it with `spacetime run`")
    return profile


def max_batch(spec: RunSpec, limit: int, ceiling: int = 1 << 20) -> int:
    """The largest per-rank micro-batch whose predicted device bytes fit `limit` (0: not even 1)."""
    profile = profile_for(spec)

    def fits(batch: int) -> bool:
        return predict(spec.with_(batch_size=batch), profile, spec.device).device_bytes <= limit

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= ceiling and fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def inference_bytes(spec: RunSpec) -> int:
    """Loading the weights for inference: at the 16-bit width under a 16-bit --dtype, quantized block
    weights under --quant, split by tensor parallelism; no KV cache, no activations, plus the context."""
    from harness.predict import CUDA_CONTEXT_BYTES

    block_w, rest_w = weight_bytes(config_for(spec), spec)
    if spec.dtype in ("bf16", "fp16"):
        rest_w /= 2
        block_w = block_w if QUANT_BYTES[spec.quant] else block_w / 2
    tp = profile_for(spec).tp
    return int((block_w + rest_w) / tp) + (CUDA_CONTEXT_BYTES if spec.device == "cuda" else 0)


def source_arithmetic(cfg: ModelConfig) -> dict[str, float]:
    """The rule-of-thumb figures the source documents give, reproduced for this model (GiB)."""
    n = cfg.param_count()
    return {"weights fp32": n * 4 / GIB, "weights fp16": n * 2 / GIB, "weights int8": n * 1 / GIB,
            "weights int4": n * 0.5 / GIB, "AdamW states (8 B/param)": n * 8 / GIB,
            "8-bit AdamW states (2 B/param)": n * 2 / GIB, "SGD momentum (4 B/param)": n * 4 / GIB}


def int8_training_example(params: float = 6e9) -> dict[str, float]:
    """The source's "6B model in int8" training budget in GB: 1 B/param weights, 1 B/param gradients,
    2 B/param 8-bit AdamW states, 1.3 GB of activations as it states them."""
    parts = {"weights": params * 1 / GB, "gradients": params * 1 / GB, "optimizer": params * 2 / GB,
             "activations": 1.3}
    return {**parts, "total": sum(parts.values())}


def result(spec: RunSpec, args: argparse.Namespace) -> tuple[Prediction, dict[str, Any]]:
    prediction = predict(spec, profile_for(spec), spec.device)
    out: dict[str, Any] = prediction.to_json()
    limit = memory_limit(args.gpu, args.gpu_memory)
    if limit:
        out["fits"] = fits_json(limit, prediction.device_bytes)
    if args.max_batch:
        if not limit:
            raise SpecError("max_batch", "needs the memory to fit", "--gpu NAME or --gpu-memory SIZE")
        out["max_batch"] = max_batch(spec, limit[1])
    if args.inference:
        out["inference_bytes"] = inference_bytes(spec)
    return prediction, out


def print_estimate(spec: RunSpec, prediction: Prediction, out: dict[str, Any]) -> None:
    cfg = config_for(spec)
    title = (f"{spec.model} ({cfg.param_count():,} params), {spec.strategy} on {spec.nproc} rank(s), "
             f"{spec.device}, {spec.dtype}, batch {spec.batch_size} x {spec.seq_len}; peak at {prediction.phase}")
    table = Table(title=title, header_style="bold")
    table.add_column("per rank")
    table.add_column("GiB", justify="right")
    for name, value in prediction.breakdown.items():
        table.add_row(name, f"{value / GIB:,.2f}")
    table.add_row("peak (allocator)", f"{prediction.peak_bytes / GIB:,.2f}")
    table.add_row("device total", f"{prediction.device_bytes / GIB:,.2f}")
    if prediction.host_bytes:
        table.add_row("offloaded to host", f"{prediction.host_bytes / GIB:,.2f}")
    console().print(table)
    print_fits(out)
    if "max_batch" in out:
        print(f"largest micro-batch that fits: {out['max_batch']}")
    if "inference_bytes" in out:
        print(f"load only (inference weights + context): {out['inference_bytes'] / GIB:,.2f} GiB")
    naive = ", ".join(f"{k} {v:,.2f}" for k, v in source_arithmetic(cfg).items())
    print(f"rule of thumb for {cfg.param_count():,} params (GiB): {naive}")


def fits_json(limit: tuple[str, int], device_bytes: int) -> dict[str, Any]:
    label, capacity = limit
    return {"device": label, "capacity_bytes": capacity, "fits": device_bytes <= capacity,
            "free_bytes": capacity - device_bytes}


def print_fits(out: dict[str, Any]) -> None:
    fits = out.get("fits")
    if fits:
        verdict = "fits" if fits["fits"] else "does not fit"
        print(f"{verdict} on {fits['device']} ({fits['capacity_bytes'] / GIB:,.2f} GiB): "
              f"{fits['free_bytes'] / GIB:+,.2f} GiB left")


def add_fit_flags(p: argparse.ArgumentParser) -> None:
    """--gpu, --gpu-memory and --json, shared by estimate and simulate."""
    p.add_argument("--gpu", help=f"check the fit on a GPU: {', '.join(GPUS)}")
    p.add_argument("--gpu-memory", help="check the fit on this much memory, e.g. 80GiB or 24GB")
    p.add_argument("--json", action="store_true", help="one JSON object as the last stdout line")


def add_parser(sub: Any, spec_flags: Any) -> None:
    p = sub.add_parser("estimate", help="predict per-rank memory without running anything")
    spec_flags(p, sweep=False)
    add_fit_flags(p)
    p.add_argument("--max-batch", action="store_true", help="the largest micro-batch that fits")
    p.add_argument("--inference", action="store_true", help="also the load-only (inference) figure")


Compute = Callable[[RunSpec, argparse.Namespace], tuple[Any, dict[str, Any]]]
Show = Callable[[RunSpec, Any, dict[str, Any]], None]


def run_figures(args: argparse.Namespace, compute: Compute, show: Show) -> int:
    """estimate's and simulate's command: the spec (for a CUDA target unless --device says otherwise), the
    figures, then one JSON line or the table; a spec that cannot be handled exits 1 with the reason."""
    from harness.cli_flags import spec_fields

    fields = spec_fields(args)
    fields["device"] = "cuda" if fields.get("device", "auto") == "auto" else fields["device"]
    try:
        spec = RunSpec(**fields).validate(measure=False)
        figures, out = compute(spec, args)
    except Unsupported as why:
        print(f"spacetime: unsupported: {why}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out))
    else:
        show(spec, figures, out)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    return run_figures(args, result, print_estimate)
