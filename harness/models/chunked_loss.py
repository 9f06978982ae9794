"""Chunked cross-entropy (`--loss chunked`), as torchtune's CEWithChunkedOutputLoss with its model's chunked
output: the model's forward splits the final norm's output along the sequence into --loss-chunks pieces and
projects each to logits (`Transformer.forward(chunks=N)`, a list, every chunk made in forward, where FSDP has the
root's parameters gathered); the loss then upcasts one chunk at a time to fp32 and sums its cross-entropy.  The
sum over the chunks divided by the token count is the mean the full loss takes.

What it changes in memory (harness/estimate/loss_memory.py counts it): the fp32 upcast of the logits, and in
backward the gradients of the log-softmax and of the upcast, exist for one chunk at a time instead of the whole
sequence.  What autograd keeps does not shrink: every chunk's log-softmax output (fp32) is saved for its
backward, so together they are as large as the full loss's, and the 16-bit chunks stay alive through the loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def chunked_cross_entropy(logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of the logit chunks (pieces of the sequence, in order) against `targets`
    (batch, seq), each chunk upcast to fp32 on its own."""
    total = logits[0].new_zeros((), dtype=torch.float32)
    for piece, wanted in zip(logits, targets.tensor_split(len(logits), dim=1), strict=True):
        total = total + F.cross_entropy(piece.flatten(0, 1).float(), wanted.flatten(), reduction="sum")
    return total / targets.numel()


def chunked_loss(model: nn.Module, chunks: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(inputs, targets) -> the mean loss of `model` (the zoo's, wrapped or not: the keyword reaches its
    forward), its output projected in `chunks` pieces of the sequence."""

    def loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return chunked_cross_entropy(model(inputs, chunks=chunks), targets)

    return loss
