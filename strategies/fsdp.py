"""FSDP2 (`fully_shard`) variants: full shard, shard-grad-op, hybrid shard (HSDP) and CPU offload.

Each transformer block is its own FSDP unit, then the root (embeddings, final norm, output), as torchtitan does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.core.errors import SpecError, Unsupported
from strategies import register
from strategies.base import ALL_KNOBS, Layout, MemoryProfile, Prepared, Strategy, require_world
from strategies.fsdp_quant import QUANT_LIMITS, check_quant, quantized_base

# What DTensor parameters (FSDP2, tensor parallel) cannot take, as measured with torch 2.13.
DTENSOR_LIMITS = {
    "quant": "bitsandbytes' int8/NF4 parameters cannot be sharded as DTensors, and torchao's weight-only "
             "tensors are not wired to be (FSDP2 shards --quant nf4 and nf4-torchao: fsdp_*); use single or ddp",
    "optimizer=adafactor": "torch.optim.Adafactor's in-place row/column norms have no DTensor sharding rule "
                           "(aten.pow_ on a _NormPartial placement); use single or ddp",
}

if TYPE_CHECKING:
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.step import OptimizerFactory
    from harness.train.world import World


def hybrid_layout(spec: RunSpec) -> Layout:
    """--dp-replicate replica groups (default 2) of nproc / replicate shards each (FSDP2 and FSDP1 HSDP)."""
    replicate = spec.dp_replicate or 2
    return Layout(dp_replicate=replicate, dp_shard=max(spec.nproc // replicate, 1))


def check_hybrid(name: str, spec: RunSpec) -> None:
    """Hybrid sharding needs 2+ ranks, and the replica groups must divide them."""
    require_world(spec, name, minimum=2)
    replicate = hybrid_layout(spec).dp_replicate
    if replicate < 1 or spec.nproc % replicate:
        raise SpecError("dp_replicate", f"{replicate} does not divide {spec.nproc} ranks", divisors(spec.nproc, 2))


def divisors(n: int, start: int = 1) -> str:
    """The divisors of `n` from `start` up, listed for a message; O(sqrt n) whatever the rank count."""
    small, d = [], 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
        d += 1
    return ", ".join(str(d) for d in sorted({*small, *(n // d for d in small)}) if d >= start)


def check_dtensor_combinations(name: str, spec: RunSpec) -> None:
    """Knob combinations DTensor parameters cannot take (single knobs are in DTENSOR_LIMITS)."""
    if spec.dtype == "bf16-pure" and spec.optimizer == "adamw8bit":
        raise Unsupported(f"{name} with --dtype bf16-pure --optimizer adamw8bit: torchao's AdamW8bit does not "
                          "compile for bf16 DTensor parameters (aten.view.dtype on OptimState8bit); use fp32 or "
                          "bf16 mixed precision, or single/ddp")


@register("fsdp_full_shard", "FSDP2: params, grads and optimizer state sharded; params re-sharded after forward")
@register("fsdp_shard_grad_op", "FSDP2: like full_shard but params stay gathered from forward to backward",
          reshard_after_forward=False)
@register("fsdp_hybrid_shard", "FSDP2 HSDP: shard within a group, replicate across --dp-replicate groups",
          hybrid=True)
@register("fsdp_offload", "FSDP2 full shard with sharded params, grads and optimizer state on the CPU",
          offload=True)
class FSDP(Strategy):
    knobs = ALL_KNOBS
    why_not = {**DTENSOR_LIMITS, **QUANT_LIMITS}

    def __init__(self, name: str, description: str = "", reshard_after_forward: bool = True,
                 hybrid: bool = False, offload: bool = False) -> None:
        super().__init__(name, description)
        self.reshard_after_forward = reshard_after_forward
        self.hybrid = hybrid
        self.offload = offload
        self.generates = reshard_after_forward and not hybrid and not offload  # fsdp_full_shard
        self.shards = "params, grads, optimizer state" + (
            " within each replica group" if hybrid else "") + (
            " (held in CPU memory, copied in per unit)" if offload else "")

    def check_knobs(self, spec: RunSpec) -> None:
        super().check_knobs(spec)
        check_dtensor_combinations(self.name, spec)
        check_quant(self.name, spec)

    def check(self, spec: RunSpec) -> None:
        if self.hybrid:
            check_hybrid(self.name, spec)

    def layout(self, spec: RunSpec) -> Layout:
        return hybrid_layout(spec) if self.hybrid else Layout(dp_shard=spec.nproc)

    def memory_profile(self, spec: RunSpec) -> MemoryProfile:
        dp = self.layout(spec).dp_shard
        return MemoryProfile(param_div=dp, grad_div=dp, optim_div=dp, casts_params=True,
                             gathered="unit" if self.reshard_after_forward else "all",
                             offload=frozenset({"params", "grads", "optimizer"}) if self.offload else frozenset())

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        import torch

        from harness.models.checkpointing import apply_checkpointing
        from harness.models.compile import compile_blocks, compile_model
        from harness.models.lora import add_adapters
        from harness.models.materialize import materialize
        from harness.train.step import make_step

        layout = self.layout(spec)
        if self.hybrid:
            mesh = world.mesh((layout.dp_replicate, layout.dp_shard), ("dp_replicate", "dp_shard"))
        else:
            mesh = world.mesh((world.world_size,), ("dp",))
        param_device = torch.device("cpu") if self.offload else world.device
        if spec.quant != "none":  # quantized from real weights, then sharded (QLoRA)
            model = quantized_base(model, param_device, world.device, spec)
        model = add_adapters(model, spec)
        apply_checkpointing(model, spec)
        compile_blocks(model, spec)  # before fully_shard, as torchtitan: FSDP's hooks stay outside
        shard_model(model, mesh, self.fsdp_kwargs(world, spec))
        if spec.quant == "none":
            materialize(model, param_device, spec.seed, buffer_device=world.device)
        model = compile_model(model, spec, whole_graph=False)  # the blocks' FSDP hooks break the graph
        optimizer = make_optimizer(model.parameters())
        # FSDP2 casts parameters itself (mixed precision policy), so no autocast; gradients are DTensor shards
        step = make_step(model, optimizer, spec, world.device, autocast=False, sharded_grads=True)
        return Prepared(model, optimizer, step)

    def wrap_generate(self, model: nn.Module, world: World, spec: RunSpec) -> nn.Module:
        """Sharded weights, gathered block by block in each forward and freed after it (no optimizer)."""
        from harness.models.generate import load_weights

        shard_model(model, world.mesh((world.world_size,), ("dp",)), {"reshard_after_forward": True})
        return load_weights(model, world.device, spec)

    def fsdp_kwargs(self, world: World, spec: RunSpec) -> dict[str, Any]:
        from torch.distributed.fsdp import CPUOffloadPolicy

        kwargs: dict[str, Any] = {"reshard_after_forward": self.reshard_after_forward, **mixed_precision(spec)}
        if self.offload:  # pinned host memory needs an accelerator
            kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=world.is_cuda)
        return kwargs


def mixed_precision(spec: RunSpec) -> dict[str, Any]:
    """FSDP2's policy for --dtype bf16/fp16: gather and compute in 16 bits, reduce gradients in fp32, keep fp32
    sharded masters.  (bf16-pure parameters are bf16 already.)"""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    from harness.train.step import AUTOCAST

    if spec.dtype not in AUTOCAST:
        return {}
    return {"mp_policy": MixedPrecisionPolicy(param_dtype=AUTOCAST[spec.dtype], reduce_dtype=torch.float32)}


def shard_model(model: nn.Module, mesh: Any, kwargs: dict[str, Any]) -> None:
    """fully_shard each transformer block, then the root."""
    from torch.distributed.fsdp import fully_shard

    for block in model.layers:  # type: ignore[union-attr]
        fully_shard(block, mesh=mesh, **kwargs)
    fully_shard(model, mesh=mesh, **kwargs)
