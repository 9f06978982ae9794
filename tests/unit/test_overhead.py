"""The harness-overhead benchmark compares like with like: its bare loop trains exactly as the harness's timed
steps do (same loss, same parameters after the same batches), and its ratios take each step at the slowest rank."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks.overhead import bare_block, harness_block, spec_for, summarize


@pytest.fixture
def world() -> Iterator[Any]:
    import torch
    import torch.distributed as dist

    from harness.train.world import World

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield World(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend="gloo")
    finally:
        dist.destroy_process_group()


def _local(p: Any) -> Any:
    from torch.distributed.tensor import DTensor

    return (p.to_local() if isinstance(p, DTensor) else p).detach()


@pytest.mark.parametrize("strategy", ["ddp", "fsdp_full_shard"])
def test_bare_loop_trains_as_the_harness_steps_do(world: Any, strategy: str) -> None:
    import torch

    from harness.models.llama import build_model
    from harness.models.materialize import param_dtype
    from harness.models.zoo import config_for
    from harness.run.worker import local_batches
    from harness.train.optimizer import make_optimizer_factory
    from strategies import get_strategy

    spec = spec_for("tiny", strategy, nproc=1, global_batch=2, seq_len=32, steps=3, device="cpu")
    wrapper = get_strategy(strategy)

    def build() -> Any:
        model = build_model(config_for(spec), spec.seq_len).to(param_dtype(spec))
        return wrapper.wrap(model, make_optimizer_factory(spec), world, spec)

    harness, bare = build(), build()
    for a, b in zip(harness.model.parameters(), bare.model.parameters(), strict=True):
        assert torch.equal(_local(a), _local(b))  # the twins start equal
    batches = local_batches(spec, wrapper.layout(spec), world)
    assert len(batches) == 3
    timed_h, loss_h = harness_block(harness, batches, world.device)
    timed_b, loss_b = bare_block(bare.model, bare.optimizer, batches, world.device)
    assert len(timed_h) == len(timed_b) == 3 and min(timed_h + timed_b) > 0
    assert torch.equal(loss_h.detach(), loss_b.detach()), (float(loss_h), float(loss_b))
    for a, b in zip(harness.model.parameters(), bare.model.parameters(), strict=True):
        assert torch.equal(_local(a), _local(b))  # same updates: same gradients, same optimizer steps
    fresh = build()
    assert any(not torch.equal(_local(a), _local(c))  # and they did train
               for a, c in zip(harness.model.parameters(), fresh.model.parameters(), strict=True))


def test_summary_takes_the_slowest_rank_per_step_and_pairs_blocks() -> None:
    cpu = {"harness_cpu": [3.0, 1.0], "bare_cpu": [2.0, 1.0]}
    ranks: list[dict[str, Any]] = [
        {"harness": [[1.0, 2.0], [3.0, 1.0]], "bare": [[1.0, 1.0], [2.0, 2.0]], "first": ["harness", "bare"], **cpu},
        {"harness": [[2.0, 1.0], [1.0, 1.0]], "bare": [[1.0, 3.0], [1.0, 1.0]], "first": ["harness", "bare"], **cpu},
    ]
    s = summarize(ranks)
    # pair 0: harness max(1,2) + max(2,1) = 4, bare 1 + 3 = 4; pair 1: harness 3 + 1 = 4, bare 2 + 2 = 4
    assert s["ratios"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert s["cpu_ratios"] == [pytest.approx(1.5), pytest.approx(1.0)]  # all ranks' CPU seconds, block over block
    ranks[0]["harness"][1] = [6.0, 2.0]  # pair 1: harness 6+2 = 8 over bare 4
    s = summarize(ranks)
    assert s["ratios"] == [pytest.approx(1.0), pytest.approx(2.0)]
    assert s["ratio_min"] == pytest.approx(1.0) and s["ratio_max"] == pytest.approx(2.0)
    assert s["ratio_p50"] == pytest.approx(1.5)
    assert s["harness_step_s"] == pytest.approx((4 + 8) / 2 / 2) and s["bare_step_s"] == pytest.approx(2.0)


def test_harness_step_adds_only_the_micro_batch_bookkeeping() -> None:
    """Every aten op the bare loop runs, plus: the micro-batches cut from inputs and targets (2 splits), the
    loss share / grad_accum and its backward (2 divs), the running total (zeros, add_) and the detached share.
    No probe, sync, .item() or copy per step, and nothing that grows with the model."""
    import collections

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from harness.core.spec import RunSpec
    from harness.models.llama import build_model
    from harness.models.materialize import materialize
    from harness.models.zoo import ZOO
    from harness.train.step import make_step

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: collections.Counter[str] = collections.Counter()

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            self.seen[str(func)] += 1
            return func(*args, **(kwargs or {}))

    cpu = torch.device("cpu")
    model = build_model(ZOO["tiny"], 32)
    materialize(model, cpu, seed=0)
    optimizer = torch.optim.AdamW(model.parameters())
    step = make_step(model, optimizer, RunSpec(model="tiny", batch_size=2, seq_len=32), cpu)
    tokens = torch.randint(0, ZOO["tiny"].vocab_size, (2, 33))
    batch = (tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())
    step(batch)  # optimizer state exists from here on, for both paths
    with Ops() as harness:
        harness_block(SimpleNamespace(step=step), [batch], cpu)  # a Prepared's step is all it uses
    with Ops() as bare:
        bare_block(model, optimizer, [batch], cpu)
    assert bare.seen - harness.seen == collections.Counter()
    assert harness.seen - bare.seen == collections.Counter(
        {"aten.split.Tensor": 2, "aten.div.Tensor": 2, "aten.zeros.default": 1, "aten.add_.Tensor": 1,
         "aten.detach.default": 1})
