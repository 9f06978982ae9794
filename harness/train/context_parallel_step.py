"""A training step under context parallelism, as torchtitan runs it: each micro-batch's tokens and targets and
the model's rotary table are split along the sequence over the cp ranks (torch's load balancer: two chunks a
rank, one from each end), and forward, backward and the optimizer step run inside torch's context_parallel,
whose ring attention replaces SDPA (on CPU through harness/train/cpu_ring_attention.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from harness.train.step import Batch

Step = Callable[[Batch], torch.Tensor]


def sequence_sharded(step: Step, model: Any, cp_mesh: Any) -> Step:
    """`step` on this rank's share of every sequence: the batch is copied, then sharded in place; the rotary
    table is sharded for the step and restored after it."""
    from torch.distributed.tensor.experimental import context_parallel

    if cp_mesh.device_type == "cpu":
        from harness.train.cpu_ring_attention import enable_cpu_ring_attention

        enable_cpu_ring_attention()

    def sharded(batch: Batch) -> torch.Tensor:
        tokens, targets = batch[0].clone(), batch[1].clone()
        with context_parallel(cp_mesh, buffers=[tokens, targets, model.rope], buffer_seq_dims=[1, 1, 0],
                              no_restore_buffers={tokens, targets}):
            return step((tokens, targets))

    return sharded
