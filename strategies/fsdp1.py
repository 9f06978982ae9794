"""FSDP1 (`FullyShardedDataParallel`) variants, for comparison with FSDP2: full shard, shard-grad-op, hybrid
shard on an explicit 2D device mesh, and CPU offload (CUDA only).

Each transformer block is its own FSDP unit (ModuleWrapPolicy), the root holds the rest, `use_orig_params`
keeps parameter names and allows frozen (LoRA) parameters.  The model is materialized before wrapping: every
rank fills the same values, so no broadcast is needed, and FSDP then keeps only its shard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.core.errors import Unsupported
from strategies import register
from strategies.base import ALL_KNOBS, Layout, MemoryProfile, Prepared, Strategy
from strategies.fsdp import DTENSOR_LIMITS, check_hybrid, hybrid_layout

if TYPE_CHECKING:
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.step import OptimizerFactory
    from harness.train.world import World

FLAT_LIMITS = {
    "quant": DTENSOR_LIMITS["quant"].replace("as DTensors", "into FSDP1's flat parameters"),
    "optimizer=adafactor": "FSDP1 hands the optimizer 1-D views of its flat shards, so Adafactor's factored "
                           "second moment is not the one a whole matrix gets; use single, ddp",
    "compile": ("not applied: FSDP1 swaps each block's parameters for views of its flat parameter, and compiling "
                "inside it is not wired in; use fsdp_full_shard (FSDP2), which compiles each block"),
}


@register("fsdp1_full_shard", "FSDP1: flat params, grads and optimizer state sharded; resharded after forward",
          sharding="FULL_SHARD")
@register("fsdp1_shard_grad_op", "FSDP1: like full_shard but params stay gathered from forward to backward",
          sharding="SHARD_GRAD_OP")
@register("fsdp1_hybrid_shard", "FSDP1 HSDP on an explicit 2D mesh: shard within a group, replicate across "
          "--dp-replicate groups", sharding="HYBRID_SHARD")
@register("fsdp1_offload", "FSDP1 full shard with params (and their grads) offloaded to CPU memory; CUDA only",
          sharding="FULL_SHARD", offload=True)
class FSDP1(Strategy):
    knobs = ALL_KNOBS - {"quant", "compile"}
    why_not = FLAT_LIMITS

    def __init__(self, name: str, description: str = "", sharding: str = "FULL_SHARD",
                 offload: bool = False) -> None:
        super().__init__(name, description)
        self.sharding = sharding
        self.offload = offload
        if offload:
            self.simulate_why_not = ("FSDP1's CPUOffload pins host memory (aten._pin_memory), which fake tensors "
                                     "cannot; simulate fsdp_offload (FSDP2)")
        self.shards = "flat params, grads, optimizer state" + (
            " within each replica group" if sharding == "HYBRID_SHARD" else "") + (
            " (params in CPU memory)" if offload else "")

    def check(self, spec: RunSpec) -> None:
        if self.offload and spec.device != "cuda":
            raise Unsupported(f"{self.name} on {spec.device}: FSDP1's CPUOffload pins host memory, which needs an "
                              "accelerator; fsdp_offload (FSDP2) runs on CPU")
        if self.sharding == "HYBRID_SHARD":
            check_hybrid(self.name, spec)
            replicate = hybrid_layout(spec).dp_replicate
            if spec.nproc // replicate < 2:
                raise Unsupported(f"{self.name} with {replicate} replica groups of 1 rank: FSDP1's HYBRID_SHARD "
                                  "never all-reduces across replicas when a shard group has one rank (measured: "
                                  "the replicas drift apart); use 4+ ranks with 2+ per group, or ddp")

    def memory_profile(self, spec: RunSpec) -> MemoryProfile:
        dp = self.layout(spec).dp_shard
        gathered = "all" if self.sharding == "SHARD_GRAD_OP" else "unit"
        return MemoryProfile(param_div=dp, grad_div=dp, optim_div=dp, gathered=gathered, casts_params=True, flat=True,
                             keeps_root=True,
                             offload=frozenset({"params", "grads"}) if self.offload else frozenset())

    def layout(self, spec: RunSpec) -> Layout:
        return hybrid_layout(spec) if self.sharding == "HYBRID_SHARD" else Layout(dp_shard=spec.nproc)

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        from torch.distributed.fsdp import FullyShardedDataParallel

        from harness.models.checkpointing import apply_checkpointing
        from harness.models.lora import add_adapters
        from harness.models.materialize import materialize
        from harness.train.step import make_step

        model = add_adapters(model, spec)
        materialize(model, world.device, spec.seed)
        apply_checkpointing(model, spec)
        fsdp = FullyShardedDataParallel(model, **self.fsdp_kwargs(world, spec))
        optimizer = make_optimizer(fsdp.parameters())
        step = make_step(fsdp, optimizer, spec, world.device, autocast=False, sharded_grads=True)
        return Prepared(fsdp, optimizer, step)

    def fsdp_kwargs(self, world: World, spec: RunSpec) -> dict[str, Any]:
        import torch
        from torch.distributed.fsdp import CPUOffload, MixedPrecision, ShardingStrategy
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        from harness.models.llama import Block
        from harness.train.step import AUTOCAST

        kwargs: dict[str, Any] = {
            "auto_wrap_policy": ModuleWrapPolicy({Block}), "use_orig_params": True,
            "sharding_strategy": ShardingStrategy[self.sharding],
            # on CPU FSDP1 only runs with an explicit CPU device_id (PLATFORM.md)
            "device_id": world.device if world.is_cuda else torch.device("cpu"),
        }
        if spec.dtype in AUTOCAST:  # 16-bit gather and compute, fp32 gradient reduction, fp32 sharded masters
            kwargs["mixed_precision"] = MixedPrecision(param_dtype=AUTOCAST[spec.dtype], reduce_dtype=torch.float32)
        if self.sharding == "HYBRID_SHARD":  # the default grouping never syncs replicas on gloo (PLATFORM.md)
            layout = self.layout(spec)
            kwargs["device_mesh"] = world.mesh((layout.dp_replicate, layout.dp_shard),
                                               ("dp_replicate", "dp_shard"))
        if self.offload:
            kwargs["cpu_offload"] = CPUOffload(offload_params=True)
        return kwargs
