"""ZeRO-3 inference's gathered parameters at each moment of generation (estimate --workload generate, zero3).

Each rank holds 1/N of every parameter from loading on (weights / N).  ZeRO's hooks all-gather a module's
parameters before its forward and release them after it, as strategies/deepspeed.py configures them: a
parameter of at most `stage3_param_persistence_threshold` elements (10 x hidden: the norms) stays whole once
gathered, the prefetch bucket and the live-parameter limit (0.9 x hidden^2 elements each) let one block
projection be gathered ahead of the one computing, and DeepSpeed's own defaults (a 5e7-element bucket, 1e9
live, 1e5 persistence) would keep every parameter of these models gathered, which is why the config sets them.
What this model counts beside the other strategies' live sets (harness/estimate/generation.py), found against
measured runs (benchmarks/results/generation-accuracy-cpu.json):
  - a forward's start: the embedding gathering (nothing else is: the strategy empties ZeRO's partition cache
    after every forward, strategies/deepspeed_generate.py, so nothing stays gathered between forwards);
  - inside a block, the persistent parameters whole and a projection gathering while the one before it is
    still whole;
  - at the head, the output projection gathering during the final norm, then held while the logits are made;
  - between forwards (beam search's step and reorder) nothing gathered;
  - gloo all-gathers through a flat buffer of the output's size and copies it out (two copies while a gather
    runs, on a CPU), NCCL in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.spec import RunSpec
from harness.estimate.load_bytes import compute_width, linear_shapes
from harness.estimate.zero import _persistent
from harness.models.zoo import ModelConfig

# the moments inside a block's forward, and those at the output projection (harness/estimate/generation.py)
IN_BLOCKS = ("prefill blocks", "decode blocks", "cache growth")
AT_HEAD = ("prefill logits", "decode logits")


@dataclass(frozen=True)
class Zero3Gathers:
    """The parameters ZeRO-3 gathers whole on a rank, in bytes."""

    embed: float  # the embedding, the first module of a forward
    head: float  # the output projection, the last
    linear: float  # the largest block projection
    persist: float  # parameters at or below the persistence threshold, whole once gathered
    copies: int  # buffers while one all-gather runs: gloo's flat buffer and the output (2), NCCL's output (1)

    @classmethod
    def of(cls, cfg: ModelConfig, spec: RunSpec) -> Zero3Gathers:
        w = compute_width(spec)
        embed = cfg.vocab_size * cfg.dim * w
        return cls(embed=embed, head=embed, linear=max(i * o for i, o in linear_shapes(cfg)) * w,
                   persist=_persistent(cfg, spec) * w, copies=2 if spec.device == "cpu" else 1)


def zero3_comm(phases: dict[str, dict[str, float]], z: Zero3Gathers, hidden: float, label: str,
               cache: float) -> dict[str, dict[str, float]]:
    """Each moment of `phases` with what is gathered then, and the forward's start and its head's gather
    added; `hidden`: one hidden state of the forward's tokens, `cache`: the KV cache before the forward."""
    for name, extra in phases.items():
        extra["comm"] = (z.persist + z.linear * (1 + z.copies) if name in IN_BLOCKS else
                         z.persist + z.head if name in AT_HEAD else 0.0)
    if not phases:
        return phases
    ids = next(iter(phases.values())).get("buffers", 0.0)
    start = {"kv_cache": cache, "buffers": ids, "comm": z.copies * z.embed}
    gather_head = {"kv_cache": next(iter(phases.values())).get("kv_cache", 0.0), "buffers": ids,
                   "activations": 2 * hidden, "comm": z.persist + z.copies * z.head}
    return {f"{label} forward start": start, f"{label} head gather": gather_head, **phases}
