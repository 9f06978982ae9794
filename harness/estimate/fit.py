"""Whether a spec fits a GPU: the GPU catalogue (`--gpu`) and sizes (`--gpu-memory`), the largest micro-batch
that fits, and the load-only (inference) figure."""

from __future__ import annotations

import re
from typing import Any

from harness.core.errors import SpecError, Unsupported
from harness.core.limits import shown
from harness.core.memory import CUDA_CONTEXT_BYTES
from harness.core.spec import RunSpec
from harness.core.units import GB, GIB, MIB
from harness.estimate.model_bytes import QUANT_BYTES, weight_bytes
from harness.estimate.predict import predict
from harness.models.zoo import config_for

# Memory of each GPU as its vendor names it (GiB: "80GB" HBM is 80 GiB); the driver shows a little less.
GPUS: dict[str, int] = {
    "H200-141GB": 141 * GB, "H100-94GB": 94 * GB, "H100-80GB": 80 * GIB, "A100-80GB": 80 * GIB,
    "A100-40GB": 40 * GIB, "L40S-48GB": 48 * GIB, "A6000-48GB": 48 * GIB, "V100-32GB": 32 * GIB,
    "RTX4090-24GB": 24 * GIB, "RTX3090-24GB": 24 * GIB, "A10-24GB": 24 * GIB, "T4-16GB": 16 * GIB,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(GiB|GB|MiB|MB)?\s*$", re.IGNORECASE)
MIN_MEMORY, MAX_MEMORY = MIB, 1 << 50  # --gpu-memory: 1 MiB to 1 PiB
_UNITS = {"gib": GIB, "gb": GB, "mib": MIB, "mb": 10**6, None: GIB}


def memory_limit(gpu: str | None, gpu_memory: str | None) -> tuple[str, int] | None:
    """(label, bytes) of the device to fit, from --gpu NAME or --gpu-memory SIZE (plain numbers are GiB)."""
    if gpu is not None and gpu_memory is not None:
        raise SpecError("gpu_memory", "give --gpu or --gpu-memory, not both")
    if gpu is not None:
        names = {name.lower(): name for name in GPUS}
        if gpu.lower() not in names:
            raise SpecError("gpu", f"unknown GPU {gpu!r}", ", ".join(GPUS))
        return names[gpu.lower()], GPUS[names[gpu.lower()]]
    if gpu_memory is not None:
        valid = "NUMBER[GiB|GB|MiB|MB] from 1 MiB to 1 PiB"
        match = _SIZE.match(gpu_memory)
        if not match:
            raise SpecError("gpu_memory", f"expected a size like 80GiB or 24GB, got {shown(gpu_memory)}", valid)
        unit = match.group(2).lower() if match.group(2) else None
        size = float(match.group(1)) * _UNITS[unit]  # a number past float range reads as inf
        if not MIN_MEMORY <= size <= MAX_MEMORY:
            raise SpecError("gpu_memory", f"{shown(gpu_memory.strip())} is out of range", valid)
        return gpu_memory.strip(), int(size)
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
    block_w, rest_w = weight_bytes(config_for(spec), spec)
    if spec.dtype in ("bf16", "fp16"):
        rest_w /= 2
        block_w = block_w if QUANT_BYTES[spec.quant] else block_w / 2
    tp = profile_for(spec).tp
    return int((block_w + rest_w) / tp) + (CUDA_CONTEXT_BYTES if spec.device == "cuda" else 0)


def fits_json(limit: tuple[str, int], device_bytes: int) -> dict[str, Any]:
    label, capacity = limit
    return {"device": label, "capacity_bytes": capacity, "fits": device_bytes <= capacity,
            "free_bytes": capacity - device_bytes}
