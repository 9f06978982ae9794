"""The simulated step itself (part of `simulate`, harness/simulate/runner.py): rank 0 of a fake process group
builds the zoo model on the meta device, wraps it with the strategy's own `wrap` under fake mode and the
stand-ins, and runs two steps under the tracker; the peak is the second step's, split by `estimate`'s
categories."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
import torch._dynamo  # noqa: F401  # the model's meta initialisation imports it: here it loads with the rest
import torch.distributed as dist

from harness.core.memory import CATEGORIES, CUDA_CONTEXT_BYTES
from harness.core.progress import current
from harness.core.spec import RunSpec
from harness.models.llama import build_model
from harness.models.materialize import param_dtype
from harness.models.zoo import config_for
from harness.simulate.fake_mode import SimFakeMode
from harness.simulate.pipeline_stand_ins import pipeline_stand_ins
from harness.simulate.stand_ins import adapt_ddp, outside_fake_mode, stand_ins
from harness.simulate.tracker import Tracker
from harness.train.optimizer import make_optimizer_factory
from harness.train.world import World
from strategies import get_strategy

# MemTracker's categories -> the breakdown keys `estimate` uses
CATEGORY = {"Parameter": "params", "Buffer": "params", "Gradient": "grads", "Optstate": "optimizer",
            "Activation": "activations", "Temp": "temporaries", "Other": "temporaries", "Comm": "comm"}
STEPS = 2


class FakeWorld(World):
    """A rank of the fake process group, on the CPU; its meshes are built outside fake mode, as every other
    DeviceMesh is (stand_ins.real_meshes)."""

    def mesh(self, shape: tuple[int, ...], names: tuple[str, ...]) -> Any:
        return outside_fake_mode(super().mesh)(shape, names)


@contextmanager
def fake_world(spec: RunSpec, rank: int = 0) -> Iterator[FakeWorld]:
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RuntimeError("simulate needs a process of its own: a process group is already initialized")
    forget_other_ranks_sharding(rank)
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=spec.nproc)
    try:
        yield FakeWorld(rank, rank, spec.nproc, torch.device("cpu"), "fake")
    finally:
        dist.destroy_process_group()


_LAST_RANK = [0]  # the rank of this process's last fake world


def forget_other_ranks_sharding(rank: int) -> None:
    """DTensor's sharding caches (native and Python) key an op by its specs, whose meshes compare equal across
    worlds of one shape whatever their process groups: a world of another rank than the last (a pipeline's next
    rank) would get specs on the last world's meshes, whose groups it does not have, so they are emptied.  A world
    of the same rank keeps them (its groups are made in the same order, under the same names)."""
    from torch.distributed.tensor import DTensor

    if rank != _LAST_RANK[0]:
        torch._C._clear_DTensor_sharding_propagator_cache()
        DTensor._op_dispatcher.sharding_propagator.propagate_op_sharding.cache_clear()
    _LAST_RANK[0] = rank


def _breakdown(snapshot: dict[torch.device, dict[Any, int]], device: str) -> dict[str, int]:
    out = dict.fromkeys(CATEGORIES, 0)
    for per_device in snapshot.values():
        for kind, nbytes in per_device.items():
            name = getattr(kind, "value", kind)
            if name != "Total":
                out[CATEGORY.get(name, "temporaries")] += nbytes
    out["context"] = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    return out


def simulated_ranks(spec: RunSpec) -> list[int]:
    """The ranks a simulation runs: rank 0, or for a pipeline the first rank of each pipeline rank's group (the
    mesh is pp-major: pipeline rank i holds ranks i x n/pp .. (i+1) x n/pp - 1, its stage's replicas or shards)."""
    strategy: Any = get_strategy(spec.strategy)
    if not getattr(strategy, "pipelines", False):
        return [0]
    pp = strategy.layout(spec).pp
    return [i * (spec.nproc // pp) for i in range(pp)]


def peak_breakdown(spec: RunSpec, device: str, rank: int = 0) -> dict[str, int]:
    """`rank`'s breakdown at the peak of the second of two steps of `spec`, for a `device` target."""
    strategy = get_strategy(spec.strategy)
    cfg = config_for(spec)
    current().show(f"simulate: build {spec.model} on the meta device")
    model = build_model(cfg, spec.seq_len).to(param_dtype(spec))  # meta, outside fake mode
    factory = make_optimizer_factory(spec, foreach=True if device == "cuda" else None)
    tracker = Tracker()
    with fake_world(spec, rank) as world, ExitStack() as stack:
        for stand_in in stand_ins(device, tracker.making_comm, tracker.mark_grad_shard):
            stack.enter_context(stand_in)
        pipeline: Any = strategy
        if getattr(pipeline, "pipelines", False):  # a pipeline rank runs its own stages only
            stack.enter_context(pipeline_stand_ins(spec, pipeline.microbatches(spec), pipeline.fsdp))
        stack.enter_context(SimFakeMode(allow_non_fake_inputs=True))
        current().show(f"simulate: wrap it ({spec.strategy}) under fake tensors, {spec.nproc} rank(s)")
        prepared = strategy.wrap(model, factory, world, spec)
        tracker.track_resident(prepared.model, prepared.optimizer)
        adapt_ddp(prepared.model, tracker.mark_comm)
        rows = spec.batch_size * spec.grad_accum
        tokens = torch.randint(0, cfg.vocab_size, (rows, spec.seq_len + 1))
        batch = (tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())
        for i in range(STEPS):
            current().show(f"simulate: step {i + 1}/{STEPS} under the memory tracker")
            with tracker:  # entering resets the peak to what is live now
                prepared.step(batch)
            tracker.reset_mod_stats()
        return _breakdown(tracker.get_tracker_snapshot("peak"), device)
