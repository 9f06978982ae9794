"""An out-of-tree strategy package, registered only through the `spacetime.strategies` entry points in
its dist-info (never imported by spacetime itself).  Tests put this folder on sys.path and PYTHONPATH.

- `plugin_ddp`: a third-party strategy that works (plain DDP written against the public interface);
- `crash`, `hang`, `oom`: strategies that fail the ways real runs fail, to test that each becomes a record.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from harness.zoo import materialize
from strategies import OptimizerFactory, Prepared, Strategy, standard_step


class PluginDDP(Strategy):
    """Third-party DDP: a full replica per rank, written outside the project."""

    shards = "nothing"

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: Any, spec: Any) -> Prepared:
        materialize(model, world.device, spec.seed)
        ddp = DistributedDataParallel(model)
        optimizer = make_optimizer(ddp.parameters())
        return Prepared(ddp, optimizer, standard_step(ddp, optimizer))


class Crash(Strategy):
    """Raises inside wrap on the last rank."""

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: Any, spec: Any) -> Prepared:
        if world.rank == world.world_size - 1:
            raise RuntimeError("planted failure in the crash strategy")
        time.sleep(60)  # the other ranks wait, as they would in a collective
        raise AssertionError("unreachable: torchrun stops the group when a rank fails")


class Hang(Strategy):
    """Never finishes wrapping: a deadlock as the launcher sees it."""

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: Any, spec: Any) -> Prepared:
        time.sleep(3600)
        raise AssertionError("unreachable: the launcher's timeout kills the run")


class OOM(Strategy):
    """Asks the allocator for far more memory than any machine has."""

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: Any, spec: Any) -> Prepared:
        torch.empty(1 << 50, dtype=torch.uint8, device=world.device)  # 1 PiB
        raise AssertionError("unreachable: the allocation fails")
