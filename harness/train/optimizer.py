"""The optimizer a run steps (`--optimizer`), built over the parameters that train."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from harness.train.step import OptimizerFactory

if TYPE_CHECKING:
    from harness.core.spec import RunSpec


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
