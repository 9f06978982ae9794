"""Checks of the tensor-parallel variants' fields, before anything is launched: --loss-parallel only where the
strategy shards the vocabulary, and sequence parallelism only where --seq-len splits over the TP degree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.core.errors import SpecError

if TYPE_CHECKING:
    from harness.core.spec import RunSpec

TP_STRATEGIES = "tp, tp_sp, fsdp_tp, fsdp_tp_sp"


def refuse_loss_parallel(spec: RunSpec, strategy: Any) -> None:
    """--loss-parallel on a strategy whose output projection is not split over the vocabulary: SpecError."""
    if spec.loss_parallel and not getattr(strategy, "vocab_parallel", False):
        raise SpecError("loss_parallel", f"{spec.strategy} has no tensor-parallel output projection whose logits "
                        "could stay sharded over the vocabulary", TP_STRATEGIES)


def check_sequence_split(spec: RunSpec, tp: int) -> None:
    """Sequence parallelism shards the residual stream's sequence over the TP ranks: --seq-len must split."""
    if spec.seq_len % tp:
        ok = ", ".join(str(n) for n in range(tp, 4 * tp + 1, tp))
        raise SpecError("seq_len", f"{spec.strategy} splits the sequence over {tp} tensor-parallel ranks; "
                        f"{spec.seq_len} tokens do not split", f"a multiple of {tp} ({ok}, ...)")
