"""Async TP's symmetric-memory workspace (part of predict, harness/estimate/predict.py).

Async TP (tp_async, fsdp_tp_async) is tp_sp with the all-gather in front of each column-parallel projection and
the reduce-scatter after each row-parallel one micro-pipelined with the matmul.  What the step saves and
gathers is tp_sp's: the fused all-gather-matmul returns the gathered input as the plain all-gather does, and
the fused matmul-reduce-scatter computes the same whole-sequence partial sums before reducing them.  What it
adds is one workspace per TP group, read from torch 2.13's torch/distributed/_symmetric_memory:

- get_symm_mem_workspace(group, min_size) keeps one uint8 buffer per group, grown to the largest request and
  never freed: a persistent term from the first step on;
- fused_all_gather_matmul (_pipelined_all_gather_and_consume) asks for one shard of the gathered input:
  the rank's tokens / tp x dim, in the input's width (fp32 under autocast: the norm's output is gathered
  before the projection casts it; 16 bits when the parameters are 16-bit);
- fused_matmul_reduce_scatter (_pipelined_produce_and_all2all) asks for two output chunks (a double buffer):
  2 x tokens / tp x dim, in the matmul's output width (16 bits under autocast or 16-bit parameters);
- every symmetric allocation also carries a signal pad (get_signal_pad_size(): 9216 bytes in torch 2.13).

The workspace is allocated by the symmetric-memory allocator (cuMem through the CUDA driver), not torch's
caching allocator, so it is not in the allocator's peak (CUDA max allocated): estimate adds it beside the
CUDA context, to the device bytes that `fits` checks.  Symmetric memory exists on CUDA only: a CPU target has
no workspace.

Checked against figures already held: the tensor-parallel matrix (benchmarks/results/tp-accuracy-cpu.json)
measured tp_sp on tiny (e.g. 2 ranks, bf16: 57,597,616 bytes a rank, predicted 57,575,424); tp_async predicts
the same allocator peak for each of those cases and only its device bytes grow, by the workspace
(tests/unit/test_cp_async_tp.py).

For tiny (dim 256) at batch 4 x seq 128 = 512 tokens, tp 2, bf16 mixed (autocast): the all-gather asks for
256 x 256 x 4 = 262,144 bytes, the reduce-scatter for 2 x 256 x 256 x 2 = 262,144: the workspace is 262,144
+ 9,216 bytes.  In fp32 the reduce-scatter's 524,288 wins.
"""

from __future__ import annotations

from harness.core.memory import MemoryProfile
from harness.core.spec import RunSpec
from harness.estimate.activations import Shapes
from harness.models.zoo import ModelConfig

SIGNAL_PAD_BYTES = 9216  # torch 2.13: torch.distributed._symmetric_memory.get_signal_pad_size()


def workspace_bytes(s: Shapes) -> float:
    """One TP group's workspace on a rank: the larger of the two fused ops' requests, plus the signal pad."""
    shard = s.t / s.tp * s.d
    gathered_width = 2.0 if s.compute == "cast" else 4.0  # the norm's output, cast inside the projection
    out_width = 4.0 if s.compute == "fp32" else 2.0
    return max(shard * gathered_width, 2 * shard * out_width) + SIGNAL_PAD_BYTES


def add_workspace(breakdown: dict[str, int], cfg: ModelConfig, spec: RunSpec, profile: MemoryProfile,
                  device: str) -> dict[str, int]:
    """`breakdown` with async TP's workspace beside the CUDA context (the module's docstring)."""
    if not profile.symm_mem or profile.tp == 1 or device != "cuda":
        return breakdown
    s = Shapes.of(cfg, spec, profile.tp, casts_params=profile.casts_params)
    return breakdown | {"context": breakdown["context"] + int(workspace_bytes(s))}
