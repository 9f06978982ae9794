"""`ddp`: DistributedDataParallel. Every rank holds the whole model, gradients are all-reduced in buckets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from harness.zoo import materialize
from strategies import register
from strategies.base import OptimizerFactory, Prepared, Strategy, standard_step

if TYPE_CHECKING:
    from harness.spec import RunSpec
    from harness.world import World


@register("ddp", "data parallel, full replica per rank, bucketed gradient all-reduce")
class DDP(Strategy):
    shards = "nothing (replicates params, grads and optimizer state; adds gradient buckets)"

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        materialize(model, world.device, spec.seed)  # DDP needs real storage to broadcast and bucket
        ddp = DistributedDataParallel(model, device_ids=[world.local_rank] if world.is_cuda else None)
        optimizer = make_optimizer(ddp.parameters())
        return Prepared(ddp, optimizer, standard_step(ddp, optimizer))
