"""Async tensor parallelism after torchtitan (`enable_async_tp`): tp_sp whose all-gather before each
column-parallel projection and reduce-scatter after each row-parallel one are micro-pipelined with the matmuls
(torch.ops.symm_mem.fused_all_gather_matmul / fused_matmul_reduce_scatter, put in by Inductor's micro-pipeline
TP pass) through a symmetric-memory workspace per TP group.

Symmetric memory and those ops are CUDA's only: on CPU the strategies are `unsupported` with torch's error
(strategies/cp_checks.py), and `estimate` models them as tp_sp plus the workspace
(harness/estimate/async_tp_memory.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from strategies import register
from strategies.base import MemoryProfile
from strategies.cp_checks import ASYNC_TP_ON_CPU, ASYNC_TP_SIMULATE, NOT_WIRED_ON_CUDA
from strategies.tp import TensorParallel

if TYPE_CHECKING:
    from harness.core.spec import RunSpec


@register("tp_async", "tp_sp with async TP: all-gather and reduce-scatter micro-pipelined with the matmuls "
          "through symmetric memory", sequence_parallel=True)
@register("fsdp_tp_async", "2D: tp_async within --tp ranks, FSDP2 across the dp = nproc/tp groups", fsdp=True,
          sequence_parallel=True)
class AsyncTensorParallel(TensorParallel):
    device_why_not = {"cpu": ASYNC_TP_ON_CPU, "cuda": NOT_WIRED_ON_CUDA}
    simulate_why_not = ASYNC_TP_SIMULATE

    def __init__(self, name: str, description: str = "", fsdp: bool = False, sequence_parallel: bool = True) -> None:
        super().__init__(name, description, fsdp, sequence_parallel)
        self.shards += "; all-gathers and reduce-scatters overlapped with the matmuls (async TP, symmetric memory)"

    def memory_profile(self, spec: RunSpec) -> MemoryProfile:
        return replace(super().memory_profile(spec), symm_mem=True)
