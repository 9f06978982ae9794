"""Measuring generation on one rank: memory after loading, then a memory pass (peaks of the prefill and of the
decode steps, the KV cache's bytes), then a separate timing pass (time to first token, seconds per decode step).

The figures come from the counters training uses (harness/train/measure.py): CUDA's allocated bytes and their
max, or the counting CPU allocator's live bytes and their peak.  Every peak is absolute (weights included), so
the largest of load, prefill and decode is the run's peak_bytes.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.models.generate import Generation, generation_steps, new_cache
from harness.train.cpu_allocator import counting_allocator
from harness.train.measure import reset_rss_peak, rss_peak_bytes, synchronize

if TYPE_CHECKING:
    from harness.core.spec import RunSpec

GENERATE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16-pure": torch.bfloat16,
                   "fp16": torch.float16}  # inference keeps pure 16-bit weights: no fp32 masters to update


def generate_dtype(spec: RunSpec) -> torch.dtype:
    return GENERATE_DTYPES[spec.dtype]


class AllocCounter:
    """Live tensor bytes and their peak since `reset()`: CUDA's allocator, or the counting CPU allocator
    (installed by `install()`, before the model is materialized)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reserved: int | None = None

    def install(self) -> None:
        if self.device.type != "cuda":
            counting_allocator().install()

    def now(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        return int(counting_allocator().current_bytes())

    def reset(self) -> None:
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            counting_allocator().reset_peak()

    def peak(self) -> int:
        synchronize(self.device)
        if self.device.type == "cuda":
            reserved = int(torch.cuda.max_memory_reserved(self.device))
            self.reserved = max(self.reserved or 0, reserved)
            return int(torch.cuda.max_memory_allocated(self.device))
        return int(counting_allocator().peak_bytes())


def tokens_digest(tokens: torch.Tensor) -> str:
    """A short hash of the generated sequences: equal on two runs exactly when every token is equal."""
    return hashlib.sha256(tokens.detach().to("cpu", torch.int64).numpy().tobytes()).hexdigest()[:16]


def _steps(model: nn.Module, prompt: torch.Tensor, spec: RunSpec, new_tokens: int, kv_heads: int,
           out: Generation) -> Any:
    rows, max_len = prompt.shape[0] * spec.num_beams, prompt.shape[1] + new_tokens
    cache = new_cache(model, spec.kv_cache, rows, max_len, generate_dtype(spec), prompt.device, kv_heads)
    return generation_steps(model, prompt, new_tokens, spec.num_beams, cache, out)


def memory_pass(model: nn.Module, prompt: torch.Tensor, spec: RunSpec, kv_heads: int,
                counter: AllocCounter) -> dict[str, Any]:
    """One generation under the counters: the prefill's peak (the cache allocated, the prompt's forward, the
    first token) and the decode steps' peak, and the cache's bytes at the end."""
    out = Generation()
    counter.reset()
    steps = _steps(model, prompt, spec, spec.new_tokens, kv_heads, out)
    next(steps)
    prefill = counter.peak()
    counter.reset()
    decode = counter.now()
    for _ in steps:
        pass
    if spec.new_tokens > 1:
        decode = counter.peak()
    assert out.tokens is not None and out.cache is not None
    return {"prefill_peak_bytes": prefill, "decode_peak_bytes": decode, "kv_cache_bytes": out.cache.nbytes(),
            "tokens_digest": tokens_digest(out.tokens)}


def timing_pass(model: nn.Module, prompt: torch.Tensor, spec: RunSpec, kv_heads: int,
                device: torch.device) -> dict[str, Any]:
    """One generation timed: seconds to the first token (the prefill and its token), then each decode step."""
    out = Generation()
    synchronize(device)
    start = time.perf_counter()
    steps = _steps(model, prompt, spec, spec.new_tokens, kv_heads, out)
    next(steps)
    synchronize(device)
    ttft = time.perf_counter() - start
    decode: list[float] = []
    while True:
        began = time.perf_counter()
        if next(steps, StopIteration) is StopIteration:
            break
        synchronize(device)
        decode.append(time.perf_counter() - began)
    return {"ttft_s": ttft, "decode_s": decode, "total_s": ttft + sum(decode)}


def measure_generation(model: nn.Module, prompt: torch.Tensor, spec: RunSpec, kv_heads: int,
                       counter: AllocCounter) -> dict[str, Any]:
    """Load bytes (read now: the model is loaded), a short warm-up generation, the memory pass, the timing
    pass."""
    load = counter.now()
    reset_rss_peak()
    for _ in _steps(model, prompt, spec, min(2, spec.new_tokens), kv_heads, Generation()):
        pass  # kernels and allocator pools warm, outside both passes
    memory = memory_pass(model, prompt, spec, kv_heads, counter)
    timing = timing_pass(model, prompt, spec, kv_heads, counter.device)
    peak = max(load, memory["prefill_peak_bytes"], memory["decode_peak_bytes"])
    return {"load_bytes": load, **memory, **timing, "alloc_peak_bytes": peak,
            "reserved_peak_bytes": counter.reserved, "rss_peak_bytes": rss_peak_bytes()}
