"""The strategy interface: check a spec before launch, wrap a meta model on each rank."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from harness.spec import RunSpec
    from harness.world import World

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, targets), both (batch, seq) int64
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


@dataclass(frozen=True)
class Layout:
    """How ranks are arranged: data-parallel replicas x data-parallel shards x tensor-parallel degree."""

    dp_replicate: int = 1
    dp_shard: int = 1
    tp: int = 1

    @property
    def dp(self) -> int:
        return self.dp_replicate * self.dp_shard


@dataclass
class Prepared:
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    step: Callable[[Batch], torch.Tensor]  # forward + backward + optimizer step + zero_grad; returns loss


class Strategy:
    """Base class. Subclasses override `wrap`, and `check`/`layout` when they constrain the world."""

    shards: str = "nothing"  # what the strategy splits or moves, for `spacetime strategies`

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description

    def check(self, spec: RunSpec) -> None:
        """Raise SpecError for a spec this strategy cannot run (before anything is launched)."""

    def layout(self, spec: RunSpec) -> Layout:
        return Layout(dp_shard=spec.nproc)

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        raise NotImplementedError


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def standard_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[Batch], torch.Tensor]:
    """The usual step: forward, loss, backward, optimizer step, zero_grad."""

    def step(batch: Batch) -> torch.Tensor:
        inputs, targets = batch
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def require_world(spec: RunSpec, name: str, minimum: int = 1, multiple_of: int = 1) -> None:
    from harness.spec import SpecError

    if spec.nproc < minimum or spec.nproc % multiple_of:
        valid = f"a multiple of {multiple_of} >= {minimum}" if multiple_of > 1 else f">= {minimum}"
        raise SpecError("nproc", f"{name} cannot use {spec.nproc} rank(s)", valid)
