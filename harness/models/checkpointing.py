"""Activation checkpointing (`--activation-checkpointing`): whole blocks recomputed in backward (`full`, and
`selective`: every --ckpt-every-th block), or, in every block, chosen ops' outputs kept and the rest recomputed
(`op`, torchtitan's op-level selective checkpointing, through torch's selective checkpoint contexts)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from harness.core.spec import RunSpec


def _saved_ops() -> frozenset[Any]:
    """The ops whose outputs `op` keeps, as torchtitan's list: the matmuls (aten.mm) and attention (SDPA, in the
    kernel each device runs; the CPU's is flash-for-CPU)."""
    aten = torch.ops.aten
    names = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu")
    return frozenset({aten.mm.default, *(getattr(aten, n).default for n in names if hasattr(aten, n))})


def op_policy() -> Callable[..., Any]:
    """torchtitan's policy: keep the outputs of the saved ops, except every second matmul of a block (counted
    from its first, in forward and again in the recompute, so both agree); recompute everything else.  The
    count starts anew in every block's forward (torchtitan's counts run on across steps, so which matmuls
    are kept there alternates from step to step when a block has an odd number of them)."""
    from torch.utils.checkpoint import CheckpointPolicy

    saved, mm = _saved_ops(), torch.ops.aten.mm.default
    counts: Counter[bool] = Counter()

    def policy(ctx: Any, func: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
        if func == mm:
            counts[ctx.is_recompute] += 1
            if counts[ctx.is_recompute] % 2 == 0:
                return CheckpointPolicy.PREFER_RECOMPUTE
        return CheckpointPolicy.MUST_SAVE if func in saved else CheckpointPolicy.PREFER_RECOMPUTE

    return policy


def _op_contexts() -> Any:
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(op_policy())


def apply_checkpointing(model: nn.Module, spec: RunSpec) -> None:
    """Wrap every block (`full`, `op`) or every --ckpt-every-th block (`selective`) so its activations are
    recomputed in backward instead of kept, all of them or (`op`) all but the policy's (non-reentrant
    torch.utils.checkpoint)."""
    if spec.activation_checkpointing == "off":
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    every = spec.ckpt_every if spec.activation_checkpointing == "selective" else 1
    wrap = partial(checkpoint_wrapper, preserve_rng_state=False)
    if spec.activation_checkpointing == "op":
        wrap = partial(wrap, context_fn=_op_contexts)
    layers: nn.ModuleList = model.layers  # type: ignore[assignment]
    for i, block in enumerate(layers):
        if i % every == 0:
            layers[i] = wrap(block)
