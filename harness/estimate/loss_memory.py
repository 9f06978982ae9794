"""--loss chunked in `estimate` (part of predict, harness/estimate/predict.py).

Chunked loss (harness/models/chunked_loss.py), t tokens, V the vocabulary, c chunks of e = t V / c logits, the
logits in the compute width w (fp32: 4, else 2), found with a tensor-by-tensor count of a real step and held to
`simulate` (exact against measurement on the CPU):
  forward   what autograd keeps is the full loss's: every chunk's fp32 log-softmax (t V 4 in all).  In the loss,
            every chunk's logits are alive (t V w, as the model returns them as one list) beside the log-softmax
            outputs made so far and, in 16 bits, the last chunk's fp32 upcast (e 4).
  backward  autograd runs every chunk's loss backward before any of the projections' (the chunks' matmuls were
            made first): at the first, the saved log-softmax beside one chunk's log-softmax gradient and upcast
            gradient (2 e 4).  Then the projections' backward, the log-softmax freed and the logits' gradients
            waiting (t V w): where the output weight trains, its per-chunk gradients are summed out of place, so
            at the second chunk the (c - 2) chunks' gradients still waiting sit beside three weight-sized
            tensors (the sum so far, the new one, their sum) in the compute width.
Under FSDP (the root gathered again for backward) the chunked loss is reported as not modelled: where the
re-gathered root's buffers fall against the chunks' backward has not been found (the rule above with the
re-gather beside it misses the simulated step by -4% to +7% on tiny).
"""

from __future__ import annotations

from harness.core.errors import NotModelled
from harness.core.spec import RunSpec
from harness.estimate.activations import BlockBytes, HeadBytes, Shapes


def check_chunked_loss(spec: RunSpec, gathers: bool) -> None:
    """NotModelled for --loss chunked under a strategy that gathers parameters (FSDP)."""
    if spec.loss_type == "chunked" and gathers:
        raise NotModelled("loss=chunked: where FSDP's re-gathered root falls against the chunks' backward is not "
                          "modelled; `spacetime simulate` runs it")


def chunked_loss_phases(s: Shapes, spec: RunSpec, blocks: BlockBytes, head: HeadBytes,
                        phases: dict[str, dict[str, float]]) -> None:
    """Replace the full loss's terms in `phases` (predict's) with the chunked loss's, in place."""
    if spec.loss_type != "chunked":
        return
    c = spec.loss_chunks
    logits = s.t * s.vocab * 4.0  # every chunk's log-softmax, kept for backward (head.forward holds it)
    width = 4.0 if s.compute == "fp32" else 2.0
    chunk = logits / c
    upcast = chunk if width == 2.0 else 0.0
    acts = blocks.total + head.forward
    in_loss = acts + s.t * s.vocab * width + upcast
    first_loss = 2 * chunk
    trains = not spec.lora_rank
    weight = 3 * s.vocab * s.d / s.tp * width if trains and c > 1 else 0.0
    projections = -logits + max(c - 2, 0) * chunk / 4.0 * width + weight + 2 * s.t / c * s.d * 4.0
    if "output projection" in phases:
        phases["output projection"]["activations"] = in_loss
    if "backward start" in phases:
        phases["backward start"]["temporaries"] = max(first_loss, projections)
