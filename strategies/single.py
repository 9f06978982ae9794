"""`single`: one rank, no parallelism. The reference every other strategy's loss is checked against."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from harness.adapters import add_adapters, apply_checkpointing, quantize_and_adapt
from harness.zoo import materialize
from strategies import register
from strategies.base import (
    ALL_KNOBS,
    Layout,
    MemoryProfile,
    OptimizerFactory,
    Prepared,
    Strategy,
    make_step,
    require_world,
)

if TYPE_CHECKING:
    from harness.spec import RunSpec
    from harness.world import World


@register("single", "one process, the whole model, no communication")
class Single(Strategy):
    shards = "nothing"
    knobs = ALL_KNOBS

    def check(self, spec: RunSpec) -> None:
        if spec.nproc != 1:
            from harness.spec import SpecError

            raise SpecError("nproc", f"single runs on exactly one rank, got {spec.nproc}", "1")
        require_world(spec, self.name)

    def layout(self, spec: RunSpec) -> Layout:
        return Layout()

    def memory_profile(self, spec: RunSpec) -> MemoryProfile:
        return MemoryProfile()

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        model = add_adapters(model, spec)  # LoRA without quantization: on meta, before materializing
        materialize(model, world.device, spec.seed)
        model = quantize_and_adapt(model, spec, world.device)  # int8/NF4 base + LoRA
        apply_checkpointing(model, spec)
        optimizer = make_optimizer(model.parameters())
        return Prepared(model, optimizer, make_step(model, optimizer, spec, world.device))
