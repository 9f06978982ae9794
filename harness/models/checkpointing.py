"""Activation checkpointing (`--activation-checkpointing`): whole blocks recomputed in backward."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from harness.core.spec import RunSpec


def apply_checkpointing(model: nn.Module, spec: RunSpec) -> None:
    """Wrap every block (`full`) or every --ckpt-every-th block (`selective`) so its activations are
    recomputed in backward instead of kept (non-reentrant torch.utils.checkpoint)."""
    if spec.activation_checkpointing == "off":
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    every = 1 if spec.activation_checkpointing == "full" else spec.ckpt_every
    layers: nn.ModuleList = model.layers  # type: ignore[assignment]
    for i, block in enumerate(layers):
        if i % every == 0:
            layers[i] = checkpoint_wrapper(block, preserve_rng_state=False)
