"""The scratch CPU kernels allocate while they run, which fake tensors do not see, for a CPU target of
`simulate --workload generate` (harness/simulate/phase_tracker.py adds it for the length of the op).

- SDPA's CPU kernel (flash attention for CPU): per-thread buffers, computed (`flash_scratch_bytes`).  For each
  of the run's threads an fp32 block of qSplit x kvSplit scores, the running max and sum (qSplit each) and
  qSplit x head_dim outputs, and in bf16/fp16 a qSplit x kvSplit copy of the scores in that width (qSplit 32,
  64 from 192 queries, 256 from 768; kvSplit 512; each at most the queries or the keys).  Measured with the
  counting allocator on this project's CPU: exact for fp32 and bf16, prefill and decode, one and two threads.
  The packed copies of keys and values the kernel makes on CPUs with AMX come from `new[]`, outside the
  allocator, and a measured run does not count them either.
- 16-bit matrix products (oneDNN's matmul, where the CPU has bf16 instructions): oneDNN's scratchpad, which
  depends on its blocking for the shape, the thread count and the CPU, so it is measured (`matmul_scratch_bytes`):
  the same op on real tensors of the same shapes under the counting allocator, once per shape and thread
  count, on this host (a CPU target is this host's CPU).  fp32 products allocate none here.  On `tiny`, a bf16
  prefill peaks in the output projection, and leaving this out missed the prefill peak by up to 1.5%.
- bitsandbytes' CPU kernels (`--quant int8|nf4`): what one op allocates beside its outputs (int8_scaled_mm's
  int32 product and the fp32 products of its dequantization; the weight gemm_4bit dequantizes), measured the
  same way; bitsandbytes' fake kernels make the outputs only.  On `tiny` in bf16, leaving this out missed the
  int8 prefill peak by 7%.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

_MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}
_SIXTEEN_BIT = (torch.bfloat16, torch.float16)


def run_threads(nproc: int) -> int:
    """The intra-op threads of each measured rank: torchrun sets OMP_NUM_THREADS=1 for more than one rank per
    host unless it is set already; one rank keeps torch's default (this process's)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return 1 if nproc > 1 else torch.get_num_threads()


def flash_scratch_bytes(query: torch.Tensor, key: torch.Tensor, threads: int) -> int:
    """Bytes the CPU flash-attention kernel allocates for (batch, heads, queries, head_dim) `query` over
    (batch, heads, keys, head_dim) `key`."""
    queries, keys, head_dim = query.shape[-2], key.shape[-2], query.shape[-1]
    q_split = min(256 if queries >= 768 else 64 if queries >= 192 else 32, queries)
    kv_split = min(512, keys)
    accumulate = q_split * kv_split + 2 * q_split + q_split * head_dim
    reduced = q_split * kv_split * query.element_size() if query.dtype != torch.float32 else 0
    return threads * (accumulate * 4 + reduced)


def is_scratch_matmul(func: Any, args: Any) -> bool:
    """A 16-bit matrix product, or a bitsandbytes op: ops whose scratch is measured."""
    if getattr(func, "namespace", None) == "bitsandbytes":
        return True
    return func in _MATMULS and isinstance(args[-1], torch.Tensor) and args[-1].dtype in _SIXTEEN_BIT


def matmul_scratch_bytes(func: Any, args: Any, threads: int) -> int:
    """The scratch of `func` (oneDNN's scratchpad, a bitsandbytes kernel's temporaries) on tensors shaped as
    `args` (fake ones), measured on real ones."""
    shapes = tuple((tuple(a.shape), tuple(a.stride()), a.dtype) if isinstance(a, torch.Tensor)
                   else _Listed(a) if isinstance(a, list) else a for a in args)
    return _measured(func, shapes, threads)


class _Listed(tuple):  # type: ignore[type-arg]
    """A list argument (a shape), hashable for the cache, given back as a list."""


def _real(shape: tuple[int, ...], stride: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Random values laid out as `shape` and `stride` (a broadcast bias reads one row many times)."""
    extent = 1 + sum((size - 1) * step for size, step in zip(shape, stride, strict=True))
    size = extent if all(shape) else 0
    flat = torch.randn(size, dtype=dtype) if dtype.is_floating_point else torch.randint(0, 100, (size,), dtype=dtype)
    return flat.as_strided(shape, stride)


@cache
def _measured(func: Any, shapes: tuple[Any, ...], threads: int) -> int:
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    from harness.train.cpu_allocator import counting_allocator

    counter = counting_allocator()
    saved = torch.get_num_threads()
    with unset_fake_temporarily(), torch.no_grad():
        args = [list(s) if isinstance(s, _Listed) else _real(*s) if isinstance(s, tuple) else s for s in shapes]
        torch.set_num_threads(threads)
        counter.install()
        try:
            func(*args)  # the first call of a shape sets oneDNN up; a measured run has warmed up
            counter.reset_peak()
            before = counter.current_bytes()
            out = func(*args)
            made = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tree_leaves(out)
                    if isinstance(t, torch.Tensor)}
            scratch = counter.peak_bytes() - before - sum(made.values())
        finally:
            counter.uninstall()
            torch.set_num_threads(saved)
    return max(0, int(scratch))
