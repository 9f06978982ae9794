"""`ddp`: DistributedDataParallel. Every rank holds the whole model, gradients are all-reduced in buckets."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from strategies import register
from strategies.base import ALL_KNOBS, MemoryProfile, Prepared, Strategy

if TYPE_CHECKING:
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.step import OptimizerFactory
    from harness.train.world import World


@register("ddp", "data parallel, full replica per rank, bucketed gradient all-reduce")
class DDP(Strategy):
    shards = "nothing (replicates params, grads and optimizer state; adds gradient buckets)"
    knobs = ALL_KNOBS
    generates = True  # as replicas: the whole model on every rank, each rank generating for its own prompts

    def memory_profile(self, spec: RunSpec) -> MemoryProfile:
        return MemoryProfile(grad_buckets=True)

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        from torch.nn.parallel import DistributedDataParallel

        from harness.models.checkpointing import apply_checkpointing
        from harness.models.compile import apply_compile
        from harness.models.lora import add_adapters
        from harness.models.materialize import materialize
        from harness.models.quantize import quantize_and_adapt
        from harness.train.step import make_step

        model = add_adapters(model, spec)
        materialize(model, world.device, spec.seed)  # DDP needs real storage to broadcast and bucket
        model = quantize_and_adapt(model, spec, world.device)
        apply_checkpointing(model, spec)
        model = apply_compile(model, spec)  # inside DDP: its gradient hooks stay eager
        ddp = DistributedDataParallel(model, device_ids=[world.local_rank] if world.is_cuda else None)
        optimizer = make_optimizer(ddp.parameters())

        def sync(last: bool) -> AbstractContextManager[Any]:  # all-reduce once per step, not per micro-batch
            return nullcontext() if last else ddp.no_sync()

        return Prepared(ddp, optimizer, make_step(ddp, optimizer, spec, world.device, sync=sync))

    def wrap_generate(self, model: nn.Module, world: World, spec: RunSpec) -> nn.Module:
        from harness.models.generate import load_weights

        return load_weights(model, world.device, spec)  # no wrapper: replicas have no gradients to all-reduce
