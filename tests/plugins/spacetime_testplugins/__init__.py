"""An out-of-tree strategy package, registered only through the `spacetime.strategies` entry points in
its dist-info (never imported by spacetime itself).  Tests put this folder on sys.path and PYTHONPATH.

- `plugin_ddp`: a third-party strategy that works (plain DDP written against the public interface);
- `crash`, `hang`, `oom`: strategies that fail the ways real runs fail, to test that each becomes a record;
- `planted`: DDP that also holds $SPACETIME_PLANTED_EXTRA x the model-state bytes (16 B/param) in an extra
  buffer, a memory regression of known size for the regression gate's tests;
- `broken` (broken.py): a module that fails to import, as a plugin with a missing dependency does;
- `fault_kill`, `fault_raise`, `fault_hang`, `fault_oom` (faults.py): DDP with a fault injected on the last
  rank mid-run, for the fault-injection suite; `unsupported` unless $SPACETIME_FAULT_DIR is set.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from harness.models.materialize import materialize
from strategies import OptimizerFactory, Prepared, Strategy, make_step


class PluginDDP(Strategy):
    """Third-party DDP: a full replica per rank, written outside the project."""

    shards = "nothing"

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: Any, spec: Any) -> Prepared:
        materialize(model, world.device, spec.seed)
        ddp = DistributedDataParallel(model)
        optimizer = make_optimizer(ddp.parameters())
        return Prepared(ddp, optimizer, make_step(ddp, optimizer, spec, world.device))


class Planted(PluginDDP):
    """DDP plus an extra buffer of $SPACETIME_PLANTED_EXTRA x model-state bytes: a planted regression."""

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: Any, spec: Any) -> Prepared:
        state_bytes = 16 * sum(p.numel() for p in model.parameters())
        extra = torch.ones(int(float(os.environ.get("SPACETIME_PLANTED_EXTRA", "0")) * state_bytes),
                           dtype=torch.uint8, device=world.device)
        prepared = super().wrap(model, make_optimizer, world, spec)
        inner = prepared.step

        def step(batch: Any) -> torch.Tensor:
            extra.add_(0)  # the buffer lives as long as training does
            return inner(batch)

        return Prepared(prepared.model, prepared.optimizer, step)


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
