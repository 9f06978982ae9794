"""Hugging Face accelerate: `accelerate_ddp` (a plain `Accelerator`) and `accelerate_fsdp` (its
`FullyShardedDataParallelPlugin` with accelerate's default FSDP version, 1), so users of the Hugging Face
stack see their own path measured.

`Accelerator.prepare` decides the wrapper from its environment, and on CPU it ignores the FSDP plugin and
wraps DDP without a word (PLATFORM.md).  `wrap` therefore checks what it got back and raises `Unsupported`
when the wrapper is not the one the strategy is named for: the record says `unsupported`, never a DDP
number filed under FSDP.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from harness.core.errors import Unsupported
from strategies import register
from strategies.base import ALL_KNOBS, MemoryProfile, Prepared, Strategy

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.step import Batch, OptimizerFactory
    from harness.train.world import World

ACCELERATE_LIMITS = {
    "loss=chunked": "its step takes the full logits through the loss (not the chunked projection); use single, "
                    "ddp or fsdp_full_shard",
    "quant": "bitsandbytes weights go through accelerate's own loading path (from_pretrained), which the zoo's "
             "random-weight models do not take; use single, ddp",
    "dtype=bf16-pure": "accelerate's mixed_precision autocasts fp32 parameters; pure bf16 is not one of its modes",
    "optimizer=adafactor": "under FSDP the optimizer gets flat 1-D shards, which Adafactor factors wrongly",
    "compile": ("not applied: accelerate compiles through its own dynamo plugin, not wired in here; use ddp or "
                "fsdp_full_shard"),
}
_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def _wrapper_names(fsdp: bool) -> tuple[str, ...]:
    """Class names `prepare` must return for the strategy to be what its name says."""
    return ("FullyShardedDataParallel", "FSDPModule") if fsdp else ("DistributedDataParallel",)


@register("accelerate_ddp", "accelerate's Accelerator with its default data parallel (DDP) wrapping")
@register("accelerate_fsdp", "accelerate's Accelerator with FullyShardedDataParallelPlugin (full shard, one "
          "unit per transformer block)", fsdp=True)
class Accelerate(Strategy):
    knobs = ALL_KNOBS - {"quant", "compile"}
    why_not = ACCELERATE_LIMITS
    simulate_why_not = ("Accelerator.prepare moves the model to its device itself, which fails on a model that "
                        "holds fake tensors; simulate ddp or fsdp_full_shard, which it wraps")

    def __init__(self, name: str, description: str = "", fsdp: bool = False) -> None:
        super().__init__(name, description)
        self.fsdp = fsdp
        self.shards = "params, grads, optimizer state (FSDP1 flat)" if fsdp else "nothing (DDP replicas)"

    def memory_profile(self, spec: RunSpec) -> MemoryProfile | None:
        return None if self.fsdp else MemoryProfile(grad_buckets=True)  # accelerate_ddp is DDP underneath

    def check(self, spec: RunSpec) -> None:
        if importlib.util.find_spec("accelerate") is None:
            raise Unsupported(f"{self.name}: accelerate is not installed (pip install 'spacetime[accelerate]')")

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        from accelerate import Accelerator

        from harness.models.checkpointing import apply_checkpointing
        from harness.models.lora import add_adapters
        from harness.models.materialize import materialize

        accelerator = Accelerator(mixed_precision=_PRECISION[spec.dtype], gradient_accumulation_steps=spec.grad_accum,
                                  cpu=not world.is_cuda, fsdp_plugin=self._plugin() if self.fsdp else None)
        model = add_adapters(model, spec)
        materialize(model, world.device, spec.seed)
        apply_checkpointing(model, spec)
        if self.fsdp:  # FSDP1 through accelerate: the optimizer must see the wrapped (flat) parameters
            wrapped = accelerator.prepare(model)
            self._check_wrapper(wrapped, spec)
            optimizer = accelerator.prepare(make_optimizer(wrapped.parameters()))
        else:
            wrapped, optimizer = accelerator.prepare(model, make_optimizer(model.parameters()))
            self._check_wrapper(wrapped, spec)
        step = _accelerate_step(accelerator, wrapped, optimizer, spec, world.device)
        return Prepared(wrapped, optimizer.optimizer, step)  # the record names the torch optimizer inside

    def _plugin(self) -> Any:
        from accelerate.utils import FullyShardedDataParallelPlugin
        from torch.distributed.fsdp import ShardingStrategy
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        from harness.models.llama import Block

        return FullyShardedDataParallelPlugin(sharding_strategy=ShardingStrategy.FULL_SHARD,
                                              auto_wrap_policy=ModuleWrapPolicy({Block}), use_orig_params=True,
                                              sync_module_states=False)

    def _check_wrapper(self, wrapped: nn.Module, spec: RunSpec) -> None:
        names = {cls.__name__ for cls in type(wrapped).__mro__}
        if not names & set(_wrapper_names(self.fsdp)):
            raise Unsupported(f"{self.name} on {spec.device}: Accelerator.prepare returned "
                              f"{type(wrapped).__name__}, not {' or '.join(_wrapper_names(self.fsdp))} "
                              "(accelerate ignores the FSDP plugin on CPU and wraps DDP); a number here would "
                              "be mislabelled, see ddp")


def _accelerate_step(accelerator: Any, model: nn.Module, optimizer: Any, spec: RunSpec,
                     device: torch.device) -> Any:
    """accelerate's loop: `accumulate` skips gradient sync and the optimizer step until the last micro-batch
    (its optimizer wrapper steps only when gradients are synced); `backward` applies the loss scale."""
    from harness.train.step import loss_fn, over_micro_batches

    accum = spec.grad_accum

    def micro(x: torch.Tensor, y: torch.Tensor, last: bool) -> torch.Tensor:
        with accelerator.accumulate(model):
            loss = loss_fn(model(x), y)
            accelerator.backward(loss)  # divides by gradient_accumulation_steps itself
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss.detach().float() / accum

    def step(batch: Batch) -> torch.Tensor:
        return over_micro_batches(batch, accum, device, micro)

    return step
