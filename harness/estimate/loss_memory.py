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
Under FSDP the root is gathered again (comm.py's re-gather) once every chunk's loss backward is done, as
after the full loss's, the last block prefetched with it: the projections' backward holds both.
"""

from __future__ import annotations

from harness.core.spec import RunSpec
from harness.estimate.activations import BlockBytes, HeadBytes, Shapes


def chunked_loss_phases(s: Shapes, spec: RunSpec, blocks: BlockBytes, head: HeadBytes,
                        phases: dict[str, dict[str, float]], gathered: float = 0.0) -> None:
    """Replace the full loss's terms in `phases` (predict's) with the chunked loss's, in place.  `gathered`:
    under FSDP, the root and one block as gathered (comm.py's gathered_bytes)."""
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
    if "forward end" in phases:  # the chunks were made in forward (predict's "output projection", as the full
        # loss's logits); the loss runs after it, with what forward's end holds (FSDP's root resharded)
        phases["chunks' loss"] = {**phases["forward end"], "activations": in_loss}
    if "backward start" in phases:
        phases["backward start"]["temporaries"] = max(first_loss, projections)
    if "root re-gathered" in phases:  # every chunk's loss backward done, the root comes back (as the full
        # loss's), the last block prefetched with it; the projections' backward follows with both gathered
        phases["backward start"]["temporaries"] = first_loss
        phases["chunks' backward"] = {"activations": acts, "temporaries": projections, "comm": gathered}
