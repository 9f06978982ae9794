"""The training step: precision (autocast, gradient scaling), gradient accumulation and the loss.

Strategies build their step with `make_step`, or, where a framework owns backward and the optimizer, loop with
`over_micro_batches`.  Mixed precision is autocast around the forward unless the strategy casts parameters
itself (FSDP2's MixedPrecisionPolicy), and fp16 scales the loss: a plain GradScaler where gradients are whole
tensors, a ShardedGradScaler (which agrees on inf/NaN across ranks) where they are DTensor shards."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from harness.core.spec import RunSpec

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, targets): (grad_accum x micro-batch, seq) int64
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
SyncControl = Callable[[bool], AbstractContextManager[Any]]  # is-last-micro-batch -> context for fwd+bwd


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def model_loss(model: nn.Module, spec: RunSpec) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(inputs, targets) -> the mean loss of `model`: its logits into `loss_fn`, or --loss chunked's projection
    and cross-entropy one chunk of the sequence at a time (harness/models/chunked_loss.py)."""
    if spec.loss_type == "chunked":
        from harness.models.chunked_loss import chunked_loss

        return chunked_loss(model, spec.loss_chunks)
    return lambda inputs, targets: loss_fn(model(inputs), targets)


def make_scaler(spec: RunSpec, device: torch.device, sharded: bool) -> Any:
    if spec.dtype != "fp16":
        return None
    if sharded:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device.type)
    return torch.amp.GradScaler(device.type)


MicroStep = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]  # (inputs, targets, last) -> loss share


def over_micro_batches(batch: Batch, accum: int, device: torch.device, micro: MicroStep,
                       finish: Callable[[], None] | None = None) -> torch.Tensor:
    """The one micro-batch loop of every strategy's step: `micro(inputs, targets, last)` runs forward and backward
    on each of the batch's `accum` micro-batches and returns its share of the mean loss (detached); `finish`
    (the optimizer step, where the strategy owns it) runs after the last.  Returns the mean loss.  The last
    share is held until `finish` is done, as a loop written inline holds its last loss."""
    inputs, targets = batch
    total = torch.zeros((), device=device)
    share = None
    for i, (x, y) in enumerate(zip(inputs.chunk(accum), targets.chunk(accum), strict=True)):
        share = micro(x, y, i == accum - 1)
        total += share
    if finish is not None:
        finish()
    del share
    return total


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, spec: RunSpec, device: torch.device, *,
              autocast: bool = True, sharded_grads: bool = False,
              sync: SyncControl | None = None) -> Callable[[Batch], torch.Tensor]:
    """forward + backward over --grad-accum micro-batches, optimizer step, zero_grad; returns the mean loss.

    `autocast=False` where the strategy casts parameters itself; `sync(last)` lets a strategy skip gradient
    communication on all but the last micro-batch (DDP's no_sync, FSDP2's set_requires_gradient_sync)."""
    dtype = AUTOCAST.get(spec.dtype) if autocast else None
    scaler = make_scaler(spec, device, sharded_grads)
    accum = spec.grad_accum
    forward_loss = model_loss(model, spec)

    def micro(x: torch.Tensor, y: torch.Tensor, last: bool) -> torch.Tensor:
        with sync(last) if sync else nullcontext():
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = forward_loss(x, y) / accum
            (scaler.scale(loss) if scaler else loss).backward()
        share = loss.detach()  # under loss parallelism a replicated DTensor: each rank's copy of the loss
        return share.to_local() if hasattr(share, "to_local") else share

    def finish() -> None:
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def step(batch: Batch) -> torch.Tensor:
        return over_micro_batches(batch, accum, device, micro, finish)

    return step
