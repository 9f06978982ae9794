"""The strategy interface: check a spec before launch, wrap a meta model on each rank.

Importing this module (or a strategy's) loads no torch: `spacetime estimate`, `strategies` and `zoo` need only
a strategy's checks and memory profile.  torch, the model helpers and the step come in `wrap`, which runs on
the ranks.  The step helpers re-exported here (`make_step`, `loss_fn`, `Batch`, `OptimizerFactory`) are
loaded from harness/train/step.py when first asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.errors import SpecError, Unsupported
from harness.core.knobs import ALL_KNOBS, KNOBS, moved_knobs
from harness.core.memory import MemoryProfile

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.step import Batch, OptimizerFactory, loss_fn, make_step
    from harness.train.world import World

__all__ = ["ALL_KNOBS", "Batch", "Layout", "MemoryProfile", "OptimizerFactory", "Prepared", "Strategy",
           "loss_fn", "make_step", "require_world"]
STEP_HELPERS = ("Batch", "OptimizerFactory", "loss_fn", "make_step")  # from harness.train.step, on first use


def __getattr__(name: str) -> Any:
    """`make_step` and the other step helpers, imported (with torch) only when a strategy asks for them."""
    if name in STEP_HELPERS:
        from harness.train import step

        return getattr(step, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Layout:
    """How ranks are arranged: data-parallel replicas x data-parallel shards x tensor-parallel degree."""

    dp_replicate: int = 1
    dp_shard: int = 1
    tp: int = 1
    pp: int = 1  # pipeline stages' ranks (outermost: ranks pp_rank x dp x tp + dp_rank x tp + tp_rank)
    cp: int = 1  # context-parallel ranks sharing each sequence (they hold one data-parallel rank's batch)

    @property
    def dp(self) -> int:
        return self.dp_replicate * self.dp_shard


@dataclass
class Prepared:
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    step: Callable[[Batch], torch.Tensor]  # forward + backward + optimizer step + zero_grad; returns loss
    figures: Callable[[], dict[str, Any]] | None = None  # the rank's extra figures after the timed steps


class Strategy:
    """Base class. Subclasses override `wrap`, and `check`/`layout` when they constrain the world."""

    shards: str = "nothing"  # what the strategy splits or moves, for `spacetime strategies`
    # Knobs (harness/core/knobs.py: KNOBS) the strategy applies; any other knob off its default is `unsupported` with
    # `why_not[knob]` as the reason, and so is one value of an applied knob listed as `why_not["knob=value"]`.
    # The optimizer comes through the factory `wrap` is given.
    knobs: frozenset[str] = frozenset({"optimizer"})
    why_not: dict[str, str] = {}
    # Why `spacetime simulate` cannot run this strategy under fake tensors; None: it can (harness/simulate/runner.py).
    simulate_why_not: str | None = None
    # Why a measured run (`run`) cannot happen on a device ("cpu", "cuda"): `unsupported` with the reason before
    # anything is launched; `estimate` still models it for any target (harness/run/validate.py).
    device_why_not: dict[str, str] = {}
    # --workload generate: whether the strategy runs it (`wrap_generate`), and why not where it does not.
    generates: bool = False
    generate_why_not: str = ("generation is not implemented for this strategy; use single, ddp, fsdp_full_shard, tp "
                             "or zero3")
    pipelines: bool = False  # reads --pp, --pp-virtual, --pp-microbatches (refused for any other strategy)

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description

    def check(self, spec: RunSpec) -> None:
        """Raise SpecError for a spec this strategy cannot run (before anything is launched)."""

    def check_knobs(self, spec: RunSpec) -> None:
        """Raise Unsupported for a knob this strategy does not apply (before anything is launched)."""
        for knob, value in moved_knobs(spec).items():
            reason = self.why_not.get(f"{knob}={value}")
            if knob not in self.knobs:
                reason = self.why_not.get(knob, f"{self.name} does not apply this knob")
            if reason:
                raise Unsupported(f"{self.name} with {KNOBS[knob][1]} {value}: {reason}")

    def prepare_host(self, spec: RunSpec) -> None:
        """Run before torchrun starts, in a child process of the launcher under the run's timeout
        (harness/run/prebuild.py): slow one-off work (building C++ ops) not to be done by every rank at once.
        What it sets in os.environ reaches the ranks."""

    def memory_profile(self, spec: RunSpec) -> MemoryProfile | None:
        """Where the strategy keeps model state on a rank, for `spacetime estimate`; None: not modelled."""
        return None

    def framework_config(self, spec: RunSpec) -> dict[str, Any] | None:
        """The config the strategy hands its framework for `spec` (DeepSpeed's JSON), for `run --dry-run`."""
        return None

    def layout(self, spec: RunSpec) -> Layout:
        return Layout(dp_shard=spec.nproc)

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        raise NotImplementedError

    def wrap_generate(self, model: nn.Module, world: World, spec: RunSpec) -> nn.Module:
        """--workload generate: the meta model loaded for inference on this rank (weights only, no optimizer)."""
        raise NotImplementedError


def require_world(spec: RunSpec, name: str, minimum: int = 1, multiple_of: int = 1) -> None:
    if spec.nproc < minimum or spec.nproc % multiple_of:
        valid = f"a multiple of {multiple_of} >= {minimum}" if multiple_of > 1 else f">= {minimum}"
        raise SpecError("nproc", f"{name} cannot use {spec.nproc} rank(s)", valid)
