"""What a pipeline spec must satisfy before launch, and the schedules' theoretical bubble (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.core.errors import SpecError, Unsupported
from harness.models.zoo import config_for

if TYPE_CHECKING:
    from harness.core.spec import RunSpec

@dataclass(frozen=True)
class PipelinePlan:
    """What a pipeline strategy resolves from a spec: the schedule, pipeline ranks x virtual stages, the
    micro-batches, and the ranks sharding a stage's state (FSDP2) and splitting its matrices (TP)."""

    schedule: str
    pp: int
    virtual: int
    micro: int
    shard: int = 1
    tp: int = 1


PIPELINE_FIELDS = ("pp", "pp_virtual", "pp_microbatches")  # RunSpec fields only a pipelining strategy reads


def refuse_pipeline_fields(spec: RunSpec, strategy: str) -> None:
    """--pp, --pp-virtual or --pp-microbatches given to a strategy that does not pipeline."""
    for field in PIPELINE_FIELDS:
        if getattr(spec, field):
            raise SpecError(field, f"{strategy} does not pipeline", "0 (or a pp_* / *_pp strategy)")


def _divisors(n: int, start: int = 1) -> str:
    return ", ".join(str(d) for d in range(start, n + 1) if n % d == 0) if n <= 4096 else f"divisors of {n}"


def check_pipeline(spec: RunSpec, name: str, schedule: str, pp: int, virtual: int, micro: int,
                   ranks_per_stage: int) -> None:
    """The mesh, the model's blocks and the micro-batches a pipeline of `pp` ranks x `virtual` stages needs;
    `ranks_per_stage`: the ranks each pipeline rank's place takes across the other mesh dimensions."""
    if spec.nproc % ranks_per_stage:
        raise SpecError("tp", f"{ranks_per_stage} does not divide {spec.nproc} ranks", _divisors(spec.nproc))
    if pp < 1 or spec.nproc % (pp * ranks_per_stage):
        raise SpecError("pp", f"{pp} pipeline stages x {ranks_per_stage} rank(s) each do not divide "
                        f"{spec.nproc} ranks", _divisors(spec.nproc // ranks_per_stage or 1))
    if schedule in ("gpipe", "1f1b") and virtual != 1:
        raise SpecError("pp_virtual", f"{name} runs one stage per rank, got {virtual}", "0 or 1")
    if schedule == "zbv" and virtual != 2:
        raise SpecError("pp_virtual", f"{name} runs exactly two stages per rank (a V), got {virtual}", "0 or 2")
    cfg = config_for(spec)
    if cfg.n_layers < pp * virtual:
        raise SpecError("pp", f"{spec.model} has {cfg.n_layers} blocks, fewer than {pp} stages x {virtual} "
                        f"virtual stages", f"pp x pp_virtual <= {cfg.n_layers}")
    if spec.batch_size % micro:
        raise SpecError("pp_microbatches", f"{micro} micro-batches do not divide the per-rank batch of "
                        f"{spec.batch_size} (--batch-size)", _divisors(spec.batch_size))
    if schedule != "gpipe" and micro < pp:
        raise SpecError("pp_microbatches", f"{name} needs at least as many micro-batches as pipeline ranks "
                        f"({pp}), got {micro}", f"a divisor of --batch-size {spec.batch_size} >= {pp}")
    rounds = max(1, micro // pp)
    if schedule in ("interleaved", "zb") and micro % rounds:
        raise SpecError("pp_microbatches", f"{name} runs micro-batches in rounds of {pp}: {micro} is not a "
                        f"multiple of its {rounds} rounds", f"a multiple of {pp}, or fewer than {2 * pp}")
    if cfg.tie_embeddings and pp > 1:
        raise Unsupported(f"{name}: {spec.model} ties its output projection to the embedding, which sit on the "
                          "first and last stages; pipelining it needs the tied gradient summed across them "
                          "(not implemented); use an untied model")


def bubble_theory(schedule: str, pp: int, virtual: int, micro: int) -> float | None:
    """The idle share of a step with equal stage times: (p-1)/(m+p-1) for GPipe and 1F1B, (p-1)/(v m+p-1)
    interleaved; None for the zero-bubble schedules, whose bubble depends on the split of backward."""
    if schedule in ("gpipe", "1f1b"):
        return (pp - 1) / (micro + pp - 1)
    if schedule == "interleaved":
        return (pp - 1) / (virtual * micro + pp - 1)
    return None
