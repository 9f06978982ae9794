"""Strategies that fail on purpose in the middle of a real run, for the fault-injection suite
(tests/integration/test_faults.py).  Each is DDP whose last rank fails on its first step; the other ranks
are by then waiting in that step's collectives, as ranks are when a peer fails.

They are driven by $SPACETIME_FAULT_DIR: without it they are `unsupported` before anything is launched, so
naming one by mistake (or a sweep over every strategy) injects nothing.  Every rank writes
`<strategy>.rank<N>` into that folder as it reaches the fault, with the time (`time.time()`), so a test knows
when the run is there and when the fault struck.

- fault_kill: the last rank SIGKILLs itself (to the launcher, a kill that is not the OOM killer's);
- fault_raise: the last rank raises;
- fault_hang: the last rank sleeps for an hour, so the others hang in the collective (for a timeout, or a
  run to interrupt or whose launcher to kill);
- fault_oom: the last rank's address space is capped (RLIMIT_AS) a little above what it maps, then it
  allocates until the allocator fails, as it does when a run outgrows its memory.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path
from typing import Any

import torch

from harness.core.errors import Unsupported
from spacetime_testplugins import PluginDDP
from strategies import OptimizerFactory, Prepared

FAULT_DIR_ENV = "SPACETIME_FAULT_DIR"
OOM_HEADROOM = 256 << 20  # bytes of address space the capped rank may still map
OOM_CHUNK = 64 << 20


def _fault_dir() -> Path:
    return Path(os.environ[FAULT_DIR_ENV])


def _kill(rank: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _raise(rank: int) -> None:
    raise RuntimeError(f"planted fault: rank {rank} raised in its first step")


def _hang(rank: int) -> None:
    time.sleep(3600)


def _mapped_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _oom(rank: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_mapped_bytes() + OOM_HEADROOM, hard))
    held = []
    for _ in range(1 << 20):  # ends in the allocator's error, long before the range does
        held.append(torch.empty(OOM_CHUNK, dtype=torch.uint8))


class Fault(PluginDDP):
    """DDP whose last rank runs `fault` at its first step."""

    fault = staticmethod(_raise)

    def check(self, spec: Any) -> None:
        if not os.environ.get(FAULT_DIR_ENV):
            raise Unsupported(f"{self.name} injects a fault, for the fault suite only (${FAULT_DIR_ENV} names "
                              "no folder)")

    def wrap(self, model: Any, make_optimizer: OptimizerFactory, world: Any, spec: Any) -> Prepared:
        prepared = super().wrap(model, make_optimizer, world, spec)
        inner, faulty = prepared.step, world.rank == world.world_size - 1
        marker = _fault_dir() / f"{self.name}.rank{world.rank}"
        steps = []

        def step(batch: Any) -> torch.Tensor:
            if not steps:
                marker.write_text(f"{time.time()}\n")
                if faulty:
                    self.fault(world.rank)
            steps.append(1)
            return inner(batch)

        return Prepared(prepared.model, prepared.optimizer, step)


class FaultKill(Fault):
    """Fault injection: DDP whose last rank SIGKILLs itself at its first step."""

    fault = staticmethod(_kill)


class FaultRaise(Fault):
    """Fault injection: DDP whose last rank raises at its first step."""

    fault = staticmethod(_raise)


class FaultHang(Fault):
    """Fault injection: DDP whose last rank stalls at its first step; the others hang in the collective."""

    fault = staticmethod(_hang)


class FaultOOM(Fault):
    """Fault injection: DDP whose last rank runs out of address space (RLIMIT_AS) at its first step."""

    fault = staticmethod(_oom)
