"""The memory-figure types estimate and simulate share: where a strategy keeps model state (MemoryProfile),
the breakdown categories, and the CUDA context a CUDA target adds."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.units import MIB

# A rank's peak, split the same way by estimate and simulate; what each holds: docs/estimate.md, "What each
# category holds" (comm: buffers that exist for communication, DDP's buckets and what FSDP gathers and reduces)
CATEGORIES = ("params", "grads", "optimizer", "activations", "temporaries", "comm", "context")


CUDA_CONTEXT_BYTES = 600 * MIB  # torch's CUDA context and kernels on an H100 (0.5-1.3 GB by driver/build)


@dataclass(frozen=True)
class MemoryProfile:
    """Where a strategy keeps model state on one rank, as divisors of the whole model's bytes."""

    param_div: int = 1
    grad_div: int = 1
    optim_div: int = 1
    gathered: str = "none"  # "unit": one block gathered at a time (+ one prefetched); "all": fwd-to-bwd
    grad_buckets: bool = False  # DDP copies gradients into all-reduce buckets of the same total size
    tp: int = 1  # tensor-parallel degree: divides block weights and the activations inside attention/MLP
    offload: frozenset[str] = frozenset()  # terms held in host memory: "params", "grads", "optimizer"
    casts_params: bool = False  # 16-bit --dtype: the strategy gathers 16-bit params (FSDP's policy), no autocast
    keeps_root: bool = False  # FSDP2's default for the root: its gathered parameters kept from forward to backward
    zero: int = 0  # DeepSpeed ZeRO stage: its buffers are modelled in harness/estimate/zero.py
    flat: bool = False  # FSDP1's flat parameters: a unit's gradient covers all of it once anything in it trains
    sequence_parallel: bool = False  # TP with SP: the residual stream and norms hold 1/tp of the sequence
    loss_parallel: bool = False  # TP's logits (and their gradient) stay 1/tp of the vocabulary into the loss
    cp: int = 1  # context parallelism: each rank holds 1/cp of every sequence (context_parallel_memory.py)
    symm_mem: bool = False  # async TP: a symmetric-memory workspace per TP group (async_tp_memory.py)


class PeakFigures:
    """A per-rank breakdown by CATEGORIES (predicted or simulated) and the totals read from it."""

    breakdown: dict[str, int]

    @property
    def peak_bytes(self) -> int:
        """The allocator's peak (no CUDA context), comparable with a record's peak_bytes."""
        return sum(v for k, v in self.breakdown.items() if k != "context")

    @property
    def device_bytes(self) -> int:
        return self.peak_bytes + self.breakdown["context"]
