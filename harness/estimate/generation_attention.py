"""predict for the generate workload: attention that is not SDPA's causal kernel, and the final logit softcap
(Gemma 2; Mistral's and Phi-3's windows), counted from harness/models/attend.py and kv_cache.py's `attend`.

For `t` query rows over `keys` cached positions, with S = t x heads (on this rank) x keys scores and
m = queries x keys mask elements (one sequence's: the mask broadcasts over rows and heads):
  window    SDPA with the boolean mask `visible` builds (causal, and within the window: the two comparisons and
            their `&` alive at once), which the kernel turns into an additive mask in the compute width.
  softcap   written out (explicit_attention): the scores in the compute width, scaled (the product beside the
            raw scores), softcapped (a division, its tanh and their product: three score tensors at once),
            masked (the mask and its negation beside the old and new scores), the softmax in fp32 (an fp32
            copy of 16-bit scores, and its output), back to the compute width (beside the fp32 weights), and
            the weights' product with the values; the queries copied to a contiguous layout for the first
            product (they are a transposed view).
Beside these, whatever the block holds at that moment (its input, the norm's output, q, k and v, the keys and
values repeated to the query heads) is the caller's `held`.
The final softcap (tanh(logits / cap) x cap) holds the logits, their quotient and the tanh, then the tanh and
the product: two more logits-sized tensors at once.
"""

from __future__ import annotations


def window_mask(queries: int, keys: int, width: float) -> float:
    """SDPA's mask for a window shorter than the keys: three boolean (queries, keys) tensors while they are
    combined, then the boolean mask beside the kernel's additive one."""
    m = float(queries * keys)
    return max(3 * m, m + m * width)


def written_out(t: int, heads: float, head_dim: int, queries: int, keys: int, width: float, window: bool) -> float:
    """The most the written-out (softcapped) attention allocates at once, beyond what the block holds."""
    s = t * heads * keys  # score elements
    m = float(queries * keys)
    w = width
    f32 = 0.0 if w >= 4 else 4.0  # softmax upcasts 16-bit scores: a copy
    masks = 3 * m if window else 2 * m  # `visible` (and the window's comparison) and its negation
    out = t * heads * head_dim * w
    return max(out + s * w, 2 * s * w,  # the first product (queries copied contiguous), then its scaled copy
               3 * s * w,  # the softcap: the scores, their quotient and its tanh
               2 * s * w + masks,  # masked_fill: old and new scores beside the mask
               s * w + s * f32 + s * 4.0,  # the softmax: its fp32 input and output beside the scores
               s * w + s * 4.0 + (s * w if f32 else 0.0),  # back to the compute width
               s * w + (s * w if f32 else s * 4.0) + out,  # weights x values
               2 * out)  # the output's transposed copy


def attention(t: int, keys: int, rows: int, heads: float, head_dim: int, width: float, softcap: bool,
              window: int) -> float:
    """What one block's attention allocates beyond what the block holds: SDPA's output (causal), with the
    window's mask (0 < window < keys), or the written-out attention (softcap)."""
    out = t * heads * head_dim * width
    if softcap:
        return written_out(t, heads, head_dim, t // rows, keys, width, window > 0)
    if 0 < window < keys:
        return out + window_mask(t // rows, keys, width)
    return out


def final_softcap(logits: float) -> float:
    """What tanh(logits / cap) x cap adds beside the logits."""
    return 2 * logits
