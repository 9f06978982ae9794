"""Which blocks each pipeline stage holds and which stages each pipeline rank runs (no torch: `estimate` and
the checks use it too; harness/train/pipeline_stages.py builds the stage modules from it)."""

from __future__ import annotations


def stage_blocks(n_layers: int, stages: int) -> list[range]:
    """Blocks of each stage, in order: as even as can be, the earlier stages taking one more where the count
    does not divide (the last stage also holds the output projection and the loss)."""
    base, extra = divmod(n_layers, stages)
    out, start = [], 0
    for s in range(stages):
        size = base + (1 if s < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def stages_of_rank(rank: int, pp: int, virtual: int, style: str = "loop") -> list[int]:
    """The stage indices pipeline rank `rank` holds, in order: `loop` (rank, rank + pp, ...) as the interleaved
    schedules run them, or `v` (rank and 2 pp - 1 - rank) as the zero-bubble V schedule does."""
    if style == "v":
        return sorted([rank, 2 * pp - 1 - rank])
    return [rank + k * pp for k in range(virtual)]
