"""What a simulated pipeline rank needs in place of its neighbours: each stage's input and output shapes given up
front, the schedule's warm-up vote decided without a received value, and each send holding its tensor as a real
one does; and what the memory tracker needs under a split backward.

A simulated rank runs only its own stages; the fake process group takes the pipeline's sends and receives but
carries no values.  torch's PipelineStage learns its shapes at the first step, either from the shapes it was
given (static) or by running a micro-batch and sending each next stage what came out (dynamic); which of the two
is decided by a vote the schedule passes along the pipeline and back (`_warmup_p2p`), whose result each rank reads
with `.item()`.  Under fake tensors neither the vote nor the metadata can travel.  So, under simulate only:

- every PipelineStage built without shapes gets them from the spec: the first stage takes a micro-batch of token
  ids, every other stage the residual stream (micro-batch rows x sequence x dim, with gradients), the last stage
  gives logits, the others the residual stream;
- the warm-up vote's outcome is set on each stage without communicating: every stage has complete plain-tensor
  shapes, so every one votes static and the vote's product is static (torch's own rule, checked per stage);
- each stage checks at run time that what it receives and sends matches those shapes (torch's own validation), so a
  wrong shape or dtype here stops the simulation instead of skewing it;
- a fake send's work holds nothing, where gloo's (and NCCL's) holds the tensor it sends until the work is gone:
  the schedules keep their send works until they wait on them (GPipe until every micro-batch has gone forward, or
  backward), and with them every input gradient or activation sent (one micro-batch's residual stream each), so
  each fake send's work holds its tensor too;
- the tracker's module hooks (torch's ModTracker) wait for the gradients of all of a module's inputs
  (`register_multi_grad_hook`, mode "all"), holding each until the last arrives in the same backward call.  The
  zero-bubble schedule splits backward into two calls (inputs, then weights): some of those waits never complete
  and hold their gradients for good (+14-22% on tiny), and under its `autograd.grad` the "all" mode raises on a
  leaf input.  Here they fire on the first gradient and hold none (mode "any"): the hooks only tell the tracker
  where backward is, which decides how what is made is labelled (activation or temporary), never what is alive.

What a measured run allocates in its steady state is the same either way: its receive buffers are built from the
shapes at the first step in both modes, and the dynamic mode's trial micro-batch is freed before that step ends
(`_post_metadata_inference_cleanup`).  The peak is taken over the second step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from harness.core.spec import RunSpec
from harness.models.zoo import config_for
from harness.train.step import AUTOCAST


def boundary_dtypes(spec: RunSpec, fsdp: bool) -> tuple[torch.dtype, torch.dtype]:
    """(residual stream, logits) dtypes between stages: the stream is 16-bit only where the blocks' weights are
    (pure bf16, or FSDP2's mixed-precision gathers); autocast keeps it fp32 (the residual adds promote) but makes
    the output projection's logits 16-bit."""
    sixteen = AUTOCAST.get(spec.dtype) or (torch.bfloat16 if spec.dtype == "bf16-pure" else None)
    stream = sixteen if sixteen is not None and (spec.dtype == "bf16-pure" or fsdp) else torch.float32
    return stream, sixteen or torch.float32


def stage_shapes(spec: RunSpec, microbatches: int, fsdp: bool, index: int,
                 total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta tensors with stage `index`'s input and output shapes (of `total` stages)."""
    cfg = config_for(spec)
    rows = spec.batch_size // microbatches
    stream, logits = boundary_dtypes(spec, fsdp)
    hidden = (rows, spec.seq_len, cfg.dim)
    meta = torch.device("meta")
    inputs = (torch.empty((rows, spec.seq_len), dtype=torch.long, device=meta) if index == 0
              else torch.empty(hidden, dtype=stream, device=meta, requires_grad=True))
    outputs = (torch.empty((rows, spec.seq_len, cfg.vocab_size), dtype=logits, device=meta, requires_grad=True)
               if index == total - 1 else torch.empty(hidden, dtype=stream, device=meta, requires_grad=True))
    return inputs, outputs


class _HoldingWork:
    """A send's work that keeps the tensors sent alive as long as itself, as gloo's SendWork does."""

    def __init__(self, work: Any, sent: list[torch.Tensor]) -> None:
        self._work, self._sent = work, sent

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        return self._work.wait(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._work, name)


@contextmanager
def pipeline_stand_ins(spec: RunSpec, microbatches: int, fsdp: bool) -> Iterator[None]:
    """PipelineStage given its shapes from `spec`, the schedules' warm-up vote decided locally, their sends' works
    holding what they send, and the tracker's module hooks firing on a module's first gradient (see above)."""
    import torch.distributed as dist
    import torch.distributed._tools.mod_tracker as mod_tracker
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    from torch.distributed.pipelining import PipelineStage, schedules
    from torch.distributed.pipelining._utils import InferenceMode
    from torch.distributed.pipelining.schedules import _PipelineSchedule

    original_init, original_warmup = PipelineStage.__init__, _PipelineSchedule._warmup_p2p
    original_batch = schedules._batch_p2p
    original_multi_grad_hook = mod_tracker.register_multi_grad_hook

    def init(stage: Any, submodule: Any, stage_index: int, num_stages: int, device: Any, *args: Any,
             **kwargs: Any) -> None:
        if not args and kwargs.get("input_args") is None and kwargs.get("output_args") is None:
            with unset_fake_temporarily():  # meta tensors: only their shapes are read
                kwargs["input_args"], kwargs["output_args"] = stage_shapes(spec, microbatches, fsdp, stage_index,
                                                                           num_stages)
        original_init(stage, submodule, stage_index, num_stages, device, *args, **kwargs)
        stage._runtime_validate = True

    def warmup(schedule: Any, stages: list[Any], has_backward: bool, p2p_done: bool) -> None:
        for stage in stages:
            if InferenceMode.needs_dynamic(stage._user_meta, has_backward):
                raise RuntimeError(f"stage {stage.stage_index} would infer its shapes by running: a simulated "
                                   "rank cannot receive them")
            stage._inference_mode = InferenceMode.STATIC

    def multi_grad_hook(tensors: Any, fn: Any, *, mode: str = "all") -> Any:
        return original_multi_grad_hook(tensors, fn, mode="any")

    def batch_p2p(ops: list[Any], desc: str | None = None) -> list[Any]:
        sent = [op.tensor for op in ops if op.op is dist.isend]
        return [_HoldingWork(work, sent) for work in original_batch(ops, desc)]

    PipelineStage.__init__ = init  # type: ignore[method-assign,assignment]
    _PipelineSchedule._warmup_p2p = warmup  # type: ignore[method-assign,assignment]
    schedules._batch_p2p = batch_p2p  # type: ignore[assignment]
    mod_tracker.register_multi_grad_hook = multi_grad_hook
    try:
        yield
    finally:
        PipelineStage.__init__ = original_init  # type: ignore[method-assign]
        _PipelineSchedule._warmup_p2p = original_warmup  # type: ignore[method-assign]
        schedules._batch_p2p = original_batch
        mod_tracker.register_multi_grad_hook = original_multi_grad_hook
