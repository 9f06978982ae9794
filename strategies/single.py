"""`single`: one rank, no parallelism. The reference every other strategy's loss is checked against."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.errors import SpecError
from strategies import register
from strategies.base import ALL_KNOBS, Layout, MemoryProfile, Prepared, Strategy, require_world

if TYPE_CHECKING:
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.step import OptimizerFactory
    from harness.train.world import World


@register("single", "one process, the whole model, no communication")
class Single(Strategy):
    shards = "nothing"
    knobs = ALL_KNOBS
    generates = True

    def check(self, spec: RunSpec) -> None:
        if spec.nproc != 1:
            raise SpecError("nproc", f"single runs on exactly one rank, got {spec.nproc}", "1")
        require_world(spec, self.name)

    def layout(self, spec: RunSpec) -> Layout:
        return Layout()

    def memory_profile(self, spec: RunSpec) -> MemoryProfile:
        return MemoryProfile()

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        from harness.models.checkpointing import apply_checkpointing  # torch and the model: on the ranks only
        from harness.models.compile import apply_compile
        from harness.models.lora import add_adapters
        from harness.models.materialize import materialize
        from harness.models.quantize import quantize_and_adapt
        from harness.train.step import make_step

        model = add_adapters(model, spec)  # LoRA without quantization: on meta, before materializing
        materialize(model, world.device, spec.seed)
        model = quantize_and_adapt(model, spec, world.device)  # int8/NF4 base + LoRA
        apply_checkpointing(model, spec)
        model = apply_compile(model, spec)  # after checkpointing, as torchtitan
        optimizer = make_optimizer(model.parameters())
        return Prepared(model, optimizer, make_step(model, optimizer, spec, world.device))

    def wrap_generate(self, model: nn.Module, world: World, spec: RunSpec) -> nn.Module:
        from harness.models.generate import load_weights

        return load_weights(model, world.device, spec)
