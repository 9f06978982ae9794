"""A pipeline rank's memory under torch's interleaved zero-bubble schedule (ZB1P, ScheduleInterleavedZeroBubble),
walked action by action in the order torch runs them.

The backward is split in two.  The input-gradient step (I) runs autograd to the stage's input with the graph
retained, and keeps, for the later weight-gradient step (W), the gradient arriving at each weight's use (every
projection's output and each norm's, the final norm's and the logits' on the last stage): a micro-batch's chunk
stays whole from its forward until its W, and those gradients join it at its I.  On the last stage, I lets go of
the loss and the logits.  W builds the weights' gradients from what I kept and then frees the chunk; the first
stage has no I (its input is token ids): its W is a full backward.  torch defers W behind the forwards and input
steps of the steady state, so more chunks are in flight than in 1F1B.  Measured on tiny (2 ranks, 2 stages each,
the counting allocator's timeline per action), each action adds:
  F  the chunk (the loss's saved tensors with it on the last stage);
  I  the intermediates' gradients, at its peak beside w2's input gradient and the one it sends (t x (ffn + dim)),
     on the last stage beside the loss's backward (two t x V) instead;
  W  the stage's gradients at its first (peaking with the intermediates' gradients not yet freed); after it, a new
     gradient beside the one kept: a block's widest (dim x ffn, with t x dim), the output projection's (V x dim,
     the blocks' intermediates' gradients freed before it, as W runs it last), on the first stage the embedding's
     once the chunk is freed; and it leaves its input gradient (t x dim, twice past the first stage) until the
     step ends.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


def _warmup(rank: int, virtual: int, per_round: int, pp: int, micro: int) -> int:
    """torch's _get_warmup_ops with multiply_factor 1."""
    return min((virtual - 1) * per_round + (pp - 1 - rank), micro * virtual)


def zb_actions(rank: int, pp: int, virtual: int, micro: int) -> list[tuple[str, int, int]]:
    """The (kind F/I/W, stage, micro-batch) actions pipeline rank `rank` runs, in torch's order (its
    _get_1f1b_rank_ops with enable_zero_bubble; the bubbles it adds do not reorder a rank's actions)."""
    per_round = micro // max(1, micro // pp)
    warmup = _warmup(rank, virtual, per_round, pp, micro)
    steady = micro * virtual - warmup

    def forward_stage(step: int) -> int:
        return (step // per_round) % virtual * pp + rank

    def backward_stage(step: int) -> int:
        return (virtual - 1 - (step - warmup) // per_round % virtual) * pp + rank

    counts: dict[tuple[str, int], int] = defaultdict(int)
    out: list[tuple[str, int, int]] = []

    def add(kind: str, stage: int) -> None:
        out.append((kind, stage, counts[kind, stage]))
        counts[kind, stage] += 1

    backwards: list[int] = []
    for op in range(warmup + steady + warmup):  # warm-up forwards, then 1F1B, then the cool-down's backwards
        if op < warmup + steady:
            add("F", forward_stage(op))
        if op >= warmup:
            add("I", backward_stage(op))
            backwards.append(op)
            if op - warmup >= rank:  # W trails I by `rank` steps, then catches up after the last forward
                add("W", backward_stage(backwards[sum(counts[k] for k in counts if k[0] == "W")]))
    while (done := sum(counts[k] for k in counts if k[0] == "W")) < len(backwards):
        add("W", backward_stage(backwards[done]))
    return out


_NAMES = {"F": "forward", "I": "input gradients", "W": "weight gradients"}


def zb_in_flight(actions: list[tuple[str, int, int]]) -> int:
    """The most chunks held at once: a chunk lives from its forward until its weight-gradient step."""
    held = most = 0
    for kind, _, _ in actions:
        held += (kind == "F") - (kind == "W")
        most = max(most, held)
    return most


@dataclass
class ZbStage:
    """One local stage's figures for one micro-batch (bytes): its chunk, the intermediates' gradients its I keeps,
    what its I frees (the last stage's loss and logits), its gradients, the peaks inside I and a later W beyond
    what they hold, and what a backward leaves until the step ends."""

    chunk: float
    kept: float
    freed: float
    grads: float
    input_peak: float
    weight_peak: float
    left: float
    first: bool


def zb_phases(actions: list[tuple[str, int, int]], stages: dict[int, ZbStage]) -> dict[str, dict[str, float]]:
    """Every action's peak (grads, activations, temporaries, the backwards' leftovers as comm), named for the
    action: 'stage 3 weight gradients (micro-batch 2)'."""
    acts = grads = left = 0.0
    built: set[int] = set()
    phases: dict[str, dict[str, float]] = {}

    def phase(name: str, held: float, temporaries: float) -> None:
        phases[name] = {"grads": grads, "activations": held, "temporaries": temporaries, "comm": left}

    for kind, index, mb in actions:
        s, name = stages[index], f"stage {index} {_NAMES[kind]} (micro-batch {mb})"
        if kind == "F":
            acts += s.chunk
            phase(name, acts, 0.0)
        elif kind == "I" and not s.first:
            phase(name, acts, s.input_peak)
            acts += s.kept - s.freed
        elif kind == "W":
            after = acts - (s.chunk - s.freed) - s.kept
            if index not in built:  # the first W builds the stage's gradients
                built.add(index)
                grads += s.grads
                phase(name, after, s.kept)
            else:
                phase(name, acts, s.weight_peak)
            acts, left = after, left + s.left
    return phases
