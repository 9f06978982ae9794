"""The step-side knobs: optimizer, precision (autocast, gradient scaling) and gradient accumulation.

Strategies build their step with `make_step`.  Mixed precision is autocast around the forward unless the
strategy casts parameters itself (FSDP2's MixedPrecisionPolicy), and fp16 scales the loss: a plain
GradScaler where gradients are whole tensors, a ShardedGradScaler (which agrees on inf/NaN across ranks)
where they are DTensor shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from harness.spec import RunSpec

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, targets): (grad_accum x micro-batch, seq) int64
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SyncControl = Callable[[bool], AbstractContextManager[Any]]  # is-last-micro-batch -> context for fwd+bwd

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def make_optimizer_factory(spec: RunSpec, foreach: bool | None = None) -> OptimizerFactory:
    """The optimizer over the parameters that train (LoRA: the adapters only).  `foreach`: torch's choice
    (None: foreach on CUDA, per tensor on CPU) unless forced, as the simulator does for a CUDA target."""

    def make(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        trainable = [p for p in params if p.requires_grad]
        each = False if _mixes_dtensors(trainable) else foreach
        if spec.optimizer == "adamw":
            return torch.optim.AdamW(trainable, lr=spec.lr, weight_decay=0.0, foreach=each)
        if spec.optimizer == "sgd":
            return torch.optim.SGD(trainable, lr=spec.lr, momentum=0.9, foreach=each)
        if spec.optimizer == "adafactor":
            return torch.optim.Adafactor(trainable, lr=spec.lr)
        if spec.optimizer == "adamw8bit":
            from torchao.optim import AdamW8bit  # block-wise 8-bit states; takes DTensor parameters too

            return AdamW8bit(trainable, lr=spec.lr, weight_decay=0.0)
        raise ValueError(spec.optimizer)

    return make


def _mixes_dtensors(params: list[nn.Parameter]) -> bool:
    """Plain tensor parallelism leaves the norms' weights as plain tensors beside DTensor matrices; torch's
    foreach kernels refuse such a list ("got mixed torch.Tensor and DTensor"), and foreach is torch's default
    on CUDA, so these optimizers run per tensor."""
    from torch.distributed.tensor import DTensor

    return len({isinstance(p, DTensor) for p in params}) > 1


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def make_scaler(spec: RunSpec, device: torch.device, sharded: bool) -> Any:
    if spec.dtype != "fp16":
        return None
    if sharded:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device.type)
    return torch.amp.GradScaler(device.type)


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, spec: RunSpec, device: torch.device, *,
              autocast: bool = True, sharded_grads: bool = False,
              sync: SyncControl | None = None) -> Callable[[Batch], torch.Tensor]:
    """forward + backward over --grad-accum micro-batches, optimizer step, zero_grad; returns the mean loss.

    `autocast=False` where the strategy casts parameters itself; `sync(last)` lets a strategy skip gradient
    communication on all but the last micro-batch (DDP's no_sync, FSDP2's set_requires_gradient_sync)."""
    dtype = AUTOCAST.get(spec.dtype) if autocast else None
    scaler = make_scaler(spec, device, sharded_grads)
    accum = spec.grad_accum

    def step(batch: Batch) -> torch.Tensor:
        inputs, targets = batch
        total = torch.zeros((), device=device)
        for i, (x, y) in enumerate(zip(inputs.chunk(accum), targets.chunk(accum), strict=True)):
            with sync(i == accum - 1) if sync else nullcontext():
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = loss_fn(model(x), y) / accum
                (scaler.scale(loss) if scaler else loss).backward()
            total += loss.detach()
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return total

    return step
