"""Checks of context parallelism's fields before anything is launched, and why async TP (and context parallelism
with tensor parallelism) do not run here (for async TP, the errors torch 2.13 gives on CPU ranks over gloo).

Context parallelism (torch.distributed.tensor.experimental.context_parallel) splits every sequence over --cp
ranks and runs ring attention over SDPA.  With load balancing (torch's default for causal attention) each rank
takes two chunks of the sequence, one from each end, so --seq-len must split into 2 x cp chunks; under tensor
parallelism with sequence parallelism each rank's 1/cp of the sequence splits again over --tp.
"""

from __future__ import annotations

from math import lcm
from typing import TYPE_CHECKING, Any

from harness.core.errors import SpecError, Unsupported
from harness.models.zoo import config_for

if TYPE_CHECKING:
    from harness.core.spec import RunSpec

CP_STRATEGIES = "cp, fsdp_cp, fsdp_tp_cp"

# torch 2.13 CPU + gloo, 2 ranks: the symm_mem ops and symmetric memory have no CPU implementation, and
# Inductor's micro-pipeline TP pass (torch._inductor.config._micro_pipeline_tp, torchtitan's enable_async_tp)
# returns without fusing where NCCL is absent, so the compiled model would run as plain tp_sp.
ASYNC_TP_ON_CPU = (
    "async TP runs torch's symmetric-memory ops, which have no CPU implementation in torch 2.13: "
    "torch.ops.symm_mem.fused_all_gather_matmul raises \"NotImplementedError: Could not run "
    "'symm_mem::fused_all_gather_matmul' with arguments from the 'CPU' backend\" (fused_matmul_reduce_scatter "
    "the same), symm_mem.empty raises \"RuntimeError: SymmetricMemory does not support device type cpu\", and "
    "Inductor's micro-pipeline TP pass skips its fusion without NCCL, so a compiled model runs as plain tp_sp; "
    "use tp_sp, or `spacetime estimate`")
CP_WITH_TP = ("a measured run does not combine context parallelism with tensor parallelism yet (ring attention "
              "over heads split by TP is untried here); measure cp or fsdp_cp, or use `spacetime estimate`")
NOT_WIRED_ON_CUDA = ("a measured run is not wired yet: it needs two or more GPUs to be checked against single's "
                     "loss; use `spacetime estimate`")
ASYNC_TP_SIMULATE = ("symmetric memory is a CUDA allocation that a fake CPU run cannot make (\"SymmetricMemory does "
                     "not support device type cpu\"), so its workspace would go uncounted; use `estimate`")
CP_SIMULATE = ("ring attention's collectives and the in-place sharding of each batch along the sequence are not "
               "run under fake tensors here; use `estimate`, or `run` (cp and fsdp_cp measure on CPU)")


def refuse_cp(spec: RunSpec, strategy: Any) -> None:
    """--cp on a strategy without context parallelism: SpecError."""
    if spec.cp and not getattr(strategy, "context_parallel", False):
        raise SpecError("cp", f"{spec.strategy} has no context parallelism", f"0 (or {CP_STRATEGIES})")


def check_context_parallel(spec: RunSpec, name: str, cp: int, tp: int, whole: bool) -> None:
    """`cp` ranks per sequence (and `tp` per tensor-parallel group) must fit the world and split the sequence;
    `whole`: the strategy puts every rank in one context-parallel group.  Attention must be plain causal SDPA."""
    groups = cp * tp
    if whole and cp != spec.nproc:
        raise SpecError("cp", f"{name} uses every rank for context parallelism: --cp must equal --nproc "
                        f"({spec.nproc}), got {cp}", f"0 or {spec.nproc}")
    if spec.nproc % groups:
        what = f"{cp} context-parallel x {tp} tensor-parallel ranks" if tp > 1 else f"{cp} context-parallel ranks"
        raise SpecError("cp", f"{what} do not divide {spec.nproc} ranks", f"a divisor of {spec.nproc // tp}")
    chunk = lcm(2 * cp, cp * tp)
    if spec.seq_len % chunk:
        why = f"into 2 x {cp} load-balanced chunks" + (f", each rank's share over {tp} tensor-parallel ranks"
                                                       if tp > 1 else "")
        raise SpecError("seq_len", f"{name} splits each sequence {why}; {spec.seq_len} tokens do not split",
                        f"a multiple of {chunk}")
    cfg = config_for(spec)
    kinds = {cfg.attention_kind(i, spec.seq_len) for i in range(cfg.n_layers)}
    if kinds != {"causal"}:
        raise Unsupported(f"{name} with {spec.model}: ring attention takes causal SDPA without a mask; "
                          f"{spec.model}'s {' and '.join(sorted(kinds - {'causal'}))} attention is not")
