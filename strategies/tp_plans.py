"""The tensor-parallel plans of `tp`, `tp_sp` and their FSDP combinations, after torchtitan's parallelize_llama.

- Megatron TP: attention and MLP projections split column-parallel in, row-parallel out; the embedding
  row-wise; the output projection column-wise over the vocabulary.  Between blocks every rank holds the whole
  residual stream (batch x seq x dim).
- Sequence parallelism (`sequence_parallel=True`): the norms run on a slice of the sequence (SequenceParallel);
  the row-parallel projections reduce-scatter their outputs along the sequence (Shard(1)) instead of
  all-reducing them, and the embedding's output is Shard(1) too, so the residual stream and the norms' inputs
  hold 1/tp of the sequence between blocks; PrepareModuleInput all-gathers the sequence in front of attention
  and the MLP.
- Loss parallelism (`loss_parallel=True`): the logits stay sharded over the vocabulary (Shard(-1)) into a
  cross-entropy run under torch.distributed.tensor.parallel.loss_parallel(); without it they are all-gathered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.train.collective_settle import live_bytes, settle


def parallelize(model: Any, tp_mesh: Any, sequence_parallel: bool = False, loss_parallel: bool = False) -> None:
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, SequenceParallel, parallelize_module

    seq = Shard(1) if sequence_parallel else Replicate()
    root: dict[str, Any] = {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=seq),
        # the logits leave the projection sharded over the vocabulary; replicated ones are gathered in
        # `_replicate_logits`, which waits for gloo to let go of the gather's buffers
        "output": ColwiseParallel(input_layouts=seq, output_layouts=Shard(-1), use_local_output=False),
    }
    if sequence_parallel:
        root["norm"] = SequenceParallel()
    parallelize_module(model, tp_mesh, root)
    if not loss_parallel:
        model.output.register_forward_hook(_replicate_logits)
    if model.cfg.tie_embeddings:  # both are Shard(0) over the vocabulary: tie the DTensor again
        model.output.weight = model.tok_embeddings.weight
    for block in model.layers:
        parallelize_module(block, tp_mesh, block_plan(block, sequence_parallel))


def block_plan(block: Any, sequence_parallel: bool) -> dict[str, Any]:
    """One transformer block's plan; with sequence parallelism the norms (sandwich norms included) take a slice
    of the sequence and attention and the MLP gather it first."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        ParallelStyle,
        PrepareModuleInput,
        RowwiseParallel,
        SequenceParallel,
    )

    plan: dict[str, ParallelStyle] = {f"attention.{n}": ColwiseParallel() for n in ("wq", "wk", "wv")}
    plan.update({"feed_forward.w1": ColwiseParallel(), "feed_forward.w3": ColwiseParallel()})
    if not sequence_parallel:
        plan.update({"attention.wo": RowwiseParallel(), "feed_forward.w2": RowwiseParallel()})
        return plan
    plan.update({
        "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
        "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
        # attention's inputs are (x, rope, cache, pos): only x is sharded; the rope table is every rank's whole
        "attention": PrepareModuleInput(input_layouts=(Shard(1), None, None, None),
                                        desired_input_layouts=(Replicate(), None, None, None)),
        "feed_forward": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
    })
    norms = ("attention_norm", "ffn_norm", "post_attention_norm", "post_ffn_norm")
    plan.update({name: SequenceParallel() for name in norms if hasattr(block, name)})
    return plan


def _replicate_logits(module: Any, args: Any, logits: Any) -> Any:
    """All-gather the vocabulary-sharded logits.  gloo's worker thread lets go of the gather's buffers (the
    shard's copy and the gathered slices) after it wakes this thread; where the allocation counter counts this
    process, wait for it, so the next tensor (the log-softmax) never counts them and the measured peak does not
    depend on scheduling."""
    from torch.distributed.tensor import Replicate

    before = live_bytes()
    full = logits.redistribute(placements=[Replicate()]).to_local()
    settle(None if before is None else before + full.untyped_storage().nbytes())
    return full


@contextmanager
def loss_parallel_context(last: bool) -> Iterator[None]:
    """The step's context around a micro-batch's forward and backward under --loss-parallel (`last` unused:
    nothing is skipped between micro-batches)."""
    from torch.distributed.tensor.parallel import loss_parallel

    with loss_parallel():
        yield
