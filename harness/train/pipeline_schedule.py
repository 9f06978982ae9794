"""Driving a torch.distributed.pipelining schedule as the training step, and timing it per stage.

The bubble is measured on each rank as the share of the schedule's wall time not spent in its stages' compute
(forward, backward of inputs and of weights, and the loss): 1 - compute / schedule time, summed over the timed
steps.  The schedule's own time leaves out the optimizer step and any data-parallel gradient reduction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from harness.train.step import Batch, loss_fn

# schedule name -> (torch class, how stages sit on ranks)
SCHEDULES = {"gpipe": ("ScheduleGPipe", "loop"), "1f1b": ("Schedule1F1B", "loop"),
             "interleaved": ("ScheduleInterleaved1F1B", "loop"), "zb": ("ScheduleInterleavedZeroBubble", "loop"),
             "zbv": ("ScheduleZBVZeroBubble", "v")}
_COMPUTE = ("forward_one_chunk", "backward_one_chunk", "backward_weight_one_chunk")


class StageClock:
    """Per step on this rank: seconds inside the schedule and seconds inside its stages' compute."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.steps: list[tuple[float, float]] = []
        self._compute = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            self._sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._sync()
                self._compute += time.perf_counter() - start

        return run

    def instrument(self, stage: Any) -> None:
        for name in _COMPUTE:
            setattr(stage, name, self.timed(getattr(stage, name)))

    @contextmanager
    def step(self) -> Iterator[None]:
        self._compute = 0.0
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.steps.append((time.perf_counter() - start, self._compute))

    def bubble(self, last: int) -> float | None:
        """The waiting share of the schedule's time over the `last` steps."""
        steps = self.steps[-last:]
        scheduled = sum(s for s, _ in steps)
        if not steps or scheduled <= 0:
            return None
        return max(0.0, 1.0 - sum(c for _, c in steps) / scheduled)


def build_schedule(kind: str, stages: list[Any], microbatches: int, clock: StageClock) -> Any:
    """The torch schedule `kind` (SCHEDULES) over this rank's PipelineStages, its loss timed as compute."""
    from torch.distributed import pipelining

    cls = getattr(pipelining, SCHEDULES[kind][0])
    for stage in stages:
        clock.instrument(stage)
    timed_loss = clock.timed(loss_fn)
    if kind in ("gpipe", "1f1b"):
        return cls(stages[0], n_microbatches=microbatches, loss_fn=timed_loss)
    return cls(stages, n_microbatches=microbatches, loss_fn=timed_loss)


def reduce_gradients(params: list[nn.Parameter], group: Any, size: int) -> None:
    """Plain data parallelism across pipeline replicas: every gradient summed over `group`, then averaged."""
    grads = [p.grad for p in params if p.grad is not None]
    if size == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=group)
    flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def make_pipeline_step(schedule: Any, stages: list[Any], optimizer: torch.optim.Optimizer, clock: StageClock,
                       pp_group: Any, replicas: tuple[Any, int] | None = None) -> Callable[[Batch], torch.Tensor]:
    """One schedule run over the rank's micro-batches, the optimizer step, zero_grad; returns the mean loss of
    the micro-batches on every rank of the pipeline (summed from the rank holding the last stage).
    `replicas`: (group, size) of plain data-parallel copies of this stage, whose gradients are averaged."""
    first = any(s.is_first for s in stages)
    last = any(s.is_last for s in stages)
    params = [p for s in stages for p in s.submod.parameters() if p.requires_grad]

    def step(batch: Batch) -> torch.Tensor:
        inputs, targets = batch
        losses: list[torch.Tensor] = []
        args = (inputs,) if first else ()
        with clock.step():
            schedule.step(*args, target=targets if last else None, losses=losses if last else None,
                          return_outputs=False)  # the last stage would keep every micro-batch's logits
        if replicas is not None:
            reduce_gradients(params, *replicas)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.stack([x.detach().float() for x in losses]).mean() if losses else \
            torch.zeros((), device=inputs.device)
        dist.all_reduce(loss, group=pp_group)
        return loss

    return step
