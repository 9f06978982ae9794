"""The tensors autograd keeps between forward and backward in a zoo model, counted from its code (zoo.py).

Per block, in order (t tokens of the micro-batch, d model width, kv the k/v width, f the MLP width; tensor
parallel divides what lives between the column- and row-parallel projections):
  norm 1   the block input x, x * rsqrt (normed) and normed * weight (the projections' input)
  q, k, v  the projections; rotary embedding keeps q and k (its products save them) and returns qr, kr
  GQA      k and v repeated to the query heads (the repeats are what attention keeps)
  SDPA     q, k, v as given, the output and the log-sum-exp (flash/efficient kernels; the math kernel keeps
           the t x t attention weights per head instead)
  wo       the output made contiguous (heads back together)
  norm 2   the residual h1, normed, normed * weight
  MLP      w1 and w3 outputs, silu(w1 x), and the product w2 takes
Under autocast (16-bit mixed precision with fp32 weights) each projection keeps its own 16-bit copy of its input
and of its weight, rotary works on fp32 copies of q and k, and the residual stream stays fp32.  Where the
parameters themselves are 16-bit (FSDP's mixed precision policy, bf16-pure, DeepSpeed) everything is 16-bit but
the norms' fp32 internals.  Activation checkpointing keeps only each checkpointed block's input and recomputes
one block at a time in backward.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.spec import RunSpec
from harness.zoo import ModelConfig

AUTOCAST_DTYPES = ("bf16", "fp16")


@dataclass(frozen=True)
class Shapes:
    t: int  # tokens in one micro-batch on this rank
    d: int
    kv: int
    f: int
    heads: int
    vocab: int
    layers: int
    tp: int
    gqa: bool
    compute: str  # "fp32", "autocast" (16-bit compute, fp32 weights and residual) or "cast" (16-bit params)

    @classmethod
    def of(cls, cfg: ModelConfig, spec: RunSpec, tp: int = 1, casts_params: bool = False) -> Shapes:
        compute = "fp32"
        if spec.dtype == "bf16-pure" or (spec.dtype in AUTOCAST_DTYPES and casts_params):
            compute = "cast"
        elif spec.dtype in AUTOCAST_DTYPES:
            compute = "autocast"
        return cls(t=spec.batch_size * spec.seq_len, d=cfg.dim, kv=cfg.n_kv_heads * cfg.head_dim, f=cfg.ffn_dim,
                   heads=cfg.n_heads, vocab=cfg.vocab_size, layers=cfg.n_layers, tp=tp,
                   gqa=cfg.n_kv_heads != cfg.n_heads, compute=compute)


@dataclass(frozen=True)
class BlockBytes:
    total: float  # every block's saved tensors at the end of forward
    recompute: float  # what one recomputed block holds during backward (0 without checkpointing)


def saved_in_block(s: Shapes) -> float:
    """Bytes one block keeps for backward (no checkpointing)."""
    lo = 4.0 if s.compute == "fp32" else 2.0  # width of projection outputs and attention tensors
    res = 2.0 if s.compute == "cast" else 4.0  # the residual stream and the norms' outputs
    t, d, kv, f, tp = s.t, s.d, s.kv, s.f, s.tp
    norm = 3 * t * d * res  # x, normed, normed * weight
    copies = 0.0
    if s.compute == "autocast":  # each projection's own 16-bit copy of its input, and of its weight
        copies = (3 * t * d + 2 * t * d) * 2.0  # wq/wk/wv take norm 1's output, w1/w3 norm 2's
        copies += (2 * d * d + 2 * d * kv + 3 * d * f) / tp * 2.0
    rope_in = (t * d + t * kv) / tp * 4.0  # q and k, or their fp32 copies under 16-bit compute
    rotated = (t * d + t * kv) / tp * lo  # qr, kr
    v = t * kv / tp * lo
    repeat = 2 * t * d / tp * lo if s.gqa else 0.0  # k and v repeated; kr and v are then not kept
    if s.gqa:
        rotated -= t * kv / tp * lo
        v = 0.0
    sdpa = t * d / tp * lo + t * s.heads / tp * 4.0  # output, log-sum-exp
    wo_in = t * d / tp * lo
    norm2 = 3 * t * d * res
    mlp = 4 * t * f / tp * lo
    return norm + copies + rope_in + rotated + v + repeat + sdpa + wo_in + norm2 + mlp


def block_saved_bytes(s: Shapes, spec: RunSpec) -> BlockBytes:
    one = saved_in_block(s)
    if spec.activation_checkpointing == "off":
        return BlockBytes(s.layers * one, 0.0)
    res = 2.0 if s.compute == "cast" else 4.0
    every = 1 if spec.activation_checkpointing == "full" else spec.ckpt_every
    checkpointed = len(range(0, s.layers, every))
    kept = checkpointed * s.t * s.d * res + (s.layers - checkpointed) * one
    return BlockBytes(kept, one)


@dataclass(frozen=True)
class HeadBytes:
    forward: float  # final norm's saved tensors and the log-softmax output
    backward: float  # the log-softmax's and the logits' gradients at the start of backward


def head_bytes(s: Shapes, spec: RunSpec) -> HeadBytes:
    res = 2.0 if s.compute == "cast" else 4.0
    logits = s.t * s.vocab * 4.0  # the loss upcasts to fp32
    norm = 3 * s.t * s.d * res
    if s.compute == "autocast":  # the output projection's 16-bit copies of its input and weight
        norm += s.t * s.d * 2.0 + s.vocab * s.d / s.tp * 2.0
    return HeadBytes(forward=norm + logits, backward=2 * logits)
