"""What sequence parallelism and loss parallelism change in the activations (harness/estimate/activations.py
counts plain tensor parallelism).

- Sequence parallelism (tp_sp, fsdp_tp_sp): the norms run on 1/tp of the sequence, so everything a norm keeps
  (its input, the rsqrt, `normed`, the sandwich norms' too) is divided by the TP degree, and so is the block
  input activation checkpointing keeps (the residual stream between blocks).  What attention and the MLP keep
  is unchanged: their projections save the all-gathered, whole-sequence input, as under plain TP.  The final
  norm is sequence-parallel too; the output projection keeps its gathered input.
- Loss parallelism (--loss-parallel): the logits stay sharded over the vocabulary, so the logits, their fp32
  copy, the log-softmax and their gradients are divided by the TP degree.  The loss's backward runs as one
  function that holds three vocabulary-wide fp32 tensors at once (two under plain TP's autograd).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from harness.core.memory import MemoryProfile
from harness.core.spec import RunSpec
from harness.estimate.activations import (
    BlockBytes,
    HeadBytes,
    Shapes,
    block_saved_bytes,
    head_bytes,
    norm_saved,
    rms_saved,
    saved_in_block,
    trained_weights,
)

Rule = Callable[[Shapes, RunSpec, int], float]


def _norms_trained(s: Shapes, spec: RunSpec) -> bool:
    trains, adapted = trained_weights(spec)
    return "norm" in trains or bool(s.flat and adapted)  # FSDP1's flat parameters: as if everything trained


def _block_norms(s: Shapes, spec: RunSpec) -> float:
    """What a block's norms over the residual stream keep: the two pre-norms and the sandwich norms."""
    trains = _norms_trained(s, spec)
    width = 4.0 if s.compute == "fp32" else 2.0
    sandwich = 2 * rms_saved(s, s.d, 1, width, trains, s.d) if s.sandwich else 0.0
    return 2 * norm_saved(s, trains) + sandwich


def _sequence_slice(s: Shapes) -> Shapes:
    return replace(s, t=s.t // s.tp)


def sequence_parallel_rule(rule: Rule | None) -> Rule:
    """A block's saved tensors under sequence parallelism: `rule`'s (saved_in_block by default) with its norms
    over 1/tp of the tokens."""
    base = rule or saved_in_block

    def sp(s: Shapes, spec: RunSpec, layer: int) -> float:
        return base(s, spec, layer) - _block_norms(s, spec) + _block_norms(_sequence_slice(s), spec)

    return sp


def tp_block_bytes(s: Shapes, spec: RunSpec, profile: MemoryProfile, rule: Rule | None = None) -> BlockBytes:
    """Every block's saved tensors (block_saved_bytes), with sequence parallelism where the profile has it."""
    if not (profile.sequence_parallel and s.tp > 1):
        return block_saved_bytes(s, spec, rule)
    blocks = block_saved_bytes(s, spec, sequence_parallel_rule(rule))
    if spec.activation_checkpointing == "off":
        return blocks
    every = 1 if spec.activation_checkpointing == "full" else spec.ckpt_every
    kept_input = s.t * s.d * (2.0 if s.compute == "cast" else 4.0)  # a checkpointed block's input
    saved = kept_input * (1 - 1 / s.tp)  # held as 1/tp of the sequence
    return BlockBytes(blocks.total - saved * len(range(0, s.layers, every)), blocks.recompute, blocks.first - saved)


def tp_head_bytes(s: Shapes, spec: RunSpec, profile: MemoryProfile) -> HeadBytes:
    """The head (head_bytes): the final norm over 1/tp of the sequence under sequence parallelism; the logits,
    the loss's and their gradients over 1/tp of the vocabulary under loss parallelism."""
    head = head_bytes(s, spec)
    if s.tp == 1:
        return head
    forward, backward, logits = head.forward, head.backward, head.logits
    if profile.sequence_parallel:
        trains = not spec.lora_rank
        forward -= norm_saved(s, trains) - norm_saved(_sequence_slice(s), trains)
    if profile.loss_parallel:
        vocab_terms = s.t * s.vocab * 4.0 + (s.t * s.vocab * (4.0 if s.compute == "fp32" else 2.0)
                                             if s.final_softcap else 0.0)
        forward -= vocab_terms * (1 - 1 / s.tp)
        # the loss's backward is one function (torch's loss_parallel): zeros with -1 at the targets, exp of the
        # log-softmax, their sum, and the product with the loss's gradient; three live at once, in fp32
        backward, logits = 3 * s.t * s.vocab * 4.0 / s.tp, logits / s.tp
    return HeadBytes(forward=forward, backward=backward, logits=logits)
