"""FSDP2 (`fully_shard`) variants: full shard, shard-grad-op, hybrid shard (HSDP) and CPU offload.

Each transformer block is its own FSDP unit, then the root (embeddings, final norm, output), as torchtitan does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.zoo import materialize
from strategies import register
from strategies.base import Layout, OptimizerFactory, Prepared, Strategy, require_world, standard_step

if TYPE_CHECKING:
    from harness.spec import RunSpec
    from harness.world import World


@register("fsdp_full_shard", "FSDP2: params, grads and optimizer state sharded; params re-sharded after forward")
@register("fsdp_shard_grad_op", "FSDP2: like full_shard but params stay gathered from forward to backward",
          reshard_after_forward=False)
@register("fsdp_hybrid_shard", "FSDP2 HSDP: shard within a group, replicate across --dp-replicate groups",
          hybrid=True)
@register("fsdp_offload", "FSDP2 full shard with sharded params, grads and optimizer state on the CPU",
          offload=True)
class FSDP(Strategy):
    def __init__(self, name: str, description: str = "", reshard_after_forward: bool = True,
                 hybrid: bool = False, offload: bool = False) -> None:
        super().__init__(name, description)
        self.reshard_after_forward = reshard_after_forward
        self.hybrid = hybrid
        self.offload = offload
        self.shards = "params, grads, optimizer state" + (
            " within each replica group" if hybrid else "") + (
            " (held in CPU memory, copied in per unit)" if offload else "")

    def check(self, spec: RunSpec) -> None:
        if not self.hybrid:
            return
        from harness.spec import SpecError

        require_world(spec, self.name, minimum=2)
        replicate = self.layout(spec).dp_replicate
        if replicate < 1 or spec.nproc % replicate:
            divisors = ", ".join(str(d) for d in range(2, spec.nproc + 1) if spec.nproc % d == 0)
            raise SpecError("dp_replicate", f"{replicate} does not divide {spec.nproc} ranks", divisors)

    def layout(self, spec: RunSpec) -> Layout:
        if not self.hybrid:
            return Layout(dp_shard=spec.nproc)
        replicate = spec.dp_replicate or 2
        return Layout(dp_replicate=replicate, dp_shard=max(spec.nproc // replicate, 1))

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        layout = self.layout(spec)
        if self.hybrid:
            mesh = world.mesh((layout.dp_replicate, layout.dp_shard), ("dp_replicate", "dp_shard"))
        else:
            mesh = world.mesh((world.world_size,), ("dp",))
        shard_model(model, mesh, self.fsdp_kwargs(world))
        param_device = torch.device("cpu") if self.offload else world.device
        materialize(model, param_device, spec.seed, buffer_device=world.device)
        optimizer = make_optimizer(model.parameters())
        return Prepared(model, optimizer, standard_step(model, optimizer))

    def fsdp_kwargs(self, world: World) -> dict[str, Any]:
        from torch.distributed.fsdp import CPUOffloadPolicy

        kwargs: dict[str, Any] = {"reshard_after_forward": self.reshard_after_forward}
        if self.offload:  # pinned host memory needs an accelerator
            kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=world.is_cuda)
        return kwargs


def shard_model(model: nn.Module, mesh: Any, kwargs: dict[str, Any]) -> None:
    """fully_shard each transformer block, then the root."""
    from torch.distributed.fsdp import fully_shard

    for block in model.layers:  # type: ignore[union-attr]
        fully_shard(block, mesh=mesh, **kwargs)
    fully_shard(model, mesh=mesh, **kwargs)
