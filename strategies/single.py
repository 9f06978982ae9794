"""`single`: one rank, no parallelism. The reference every other strategy's loss is checked against."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from harness.zoo import materialize
from strategies import register
from strategies.base import Layout, OptimizerFactory, Prepared, Strategy, require_world, standard_step

if TYPE_CHECKING:
    from harness.spec import RunSpec
    from harness.world import World


@register("single", "one process, the whole model, no communication")
class Single(Strategy):
    shards = "nothing"

    def check(self, spec: RunSpec) -> None:
        if spec.nproc != 1:
            from harness.spec import SpecError

            raise SpecError("nproc", f"single runs on exactly one rank, got {spec.nproc}", "1")
        require_world(spec, self.name)

    def layout(self, spec: RunSpec) -> Layout:
        return Layout()

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        materialize(model, world.device, spec.seed)
        optimizer = make_optimizer(model.parameters())
        return Prepared(model, optimizer, standard_step(model, optimizer))
