"""The tensors autograd keeps between forward and backward in a zoo model, counted from its code
(harness/models/llama.py) and checked tensor by tensor against `torch.autograd.graph.saved_tensors_hooks` on a
real block.

Per block (t tokens of the micro-batch, d model width, kv the k/v width, f the MLP width, r the LoRA rank;
tensor parallelism divides what lives between the column- and row-parallel projections):
  RMSNorm  its input and the rsqrt; `normed` only when the norm's weight trains (the weight's gradient needs
           it).  Its input is upcast with .float(): a 16-bit input (FSDP's 16-bit parameters) leaves two fp32
           copies, one saved by pow and one by the multiply.
  linear   its input only when its weight trains (the weight's gradient); q/k/v share norm 1's output,
           w1/w3 norm 2's, wo's is a view of SDPA's output.  Under autocast q/k/v/w1/w3 each keep their own
           16-bit copy of the fp32 input (when the weight trains), and every projection a 16-bit copy of its
           weight (always: the input's gradient needs it).
  LoRA     an adapted projection keeps its input (shared with the base) and A's output (t x r); under
           autocast also 16-bit copies of A and B.
  rotary   nothing but its cos/sin tables (the multiplies save the constant operand).
  SDPA     q, k, v as given (k, v repeated to the query heads under GQA), the output and the log-sum-exp
           (flash/efficient kernels; the math kernel keeps the t x t attention weights per head instead).
  MLP      w1 and w3 outputs and silu(w1 x) (or GELU's) always; the product w2 takes only when w2 trains.
The families' extras (ModelConfig's family fields; q is the query width, heads x head_dim, the model width
unless head_dim is set apart):
  q/k norm an RMSNorm over each head of q and of k (Qwen3): as RMSNorm, over the 16-bit projection output
           under autocast (two fp32 copies), one rsqrt per head.
  sandwich the norms after attention and the MLP (Gemma 2), over 16-bit outputs under autocast.
  (1 + w)  every norm also keeps 1 + weight, a tensor of its own (Gemma).
  window   a window shorter than the sequence: SDPA with a mask, which it keeps (seq x seq, in its width).
  softcap  softcapped attention, written out (harness/models/attend.py): contiguous copies of q, k and v, the
           tanh of the scores, the mask (seq x seq bools), the fp32 softmax and, in 16 bits, its 16-bit copy;
           wo's input only when wo trains (no LSE).
DeepSpeed ZeRO-3 replaces F.linear with a function that saves the input of every projection, frozen or not.
Activation checkpointing keeps only each checkpointed block's input and recomputes one block at a time in
backward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.core.knobs import lora_modules
from harness.core.spec import RunSpec
from harness.models.zoo import ModelConfig

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
    every_input: bool = False  # every projection keeps its input, trained or frozen (DeepSpeed ZeRO-3's linear)
    flat: bool = False  # FSDP1: a block's frozen weights are views into a flat parameter that trains
    q: int = 0  # width of q and of attention's output; 0: d
    seq: int = 0  # tokens in one sequence (written-out attention keeps seq x seq scores per head)
    qk_heads: tuple[int, int] = (0, 0)  # q and k heads under a norm over each head (Qwen3); (0, 0): none
    sandwich: bool = False  # norms after attention and the MLP (Gemma 2)
    offset: bool = False  # norms that scale by 1 + weight (Gemma)
    final_softcap: bool = False  # output logits softcapped
    attention: tuple[str, ...] = ()  # per block: "causal", "window" or "softcap" (ModelConfig.attention_kind)

    @classmethod
    def of(cls, cfg: ModelConfig, spec: RunSpec, tp: int = 1, casts_params: bool = False,
           every_input: bool = False, flat: bool = False) -> Shapes:
        compute = "fp32"
        if spec.dtype == "bf16-pure" or (spec.dtype in AUTOCAST_DTYPES and casts_params):
            compute = "cast"
        elif spec.dtype in AUTOCAST_DTYPES:
            compute = "autocast"
        return cls(t=spec.batch_size * spec.seq_len, d=cfg.dim, kv=cfg.n_kv_heads * cfg.head_dim, f=cfg.ffn_dim,
                   heads=cfg.n_heads, vocab=cfg.vocab_size, layers=cfg.n_layers, tp=tp,
                   gqa=cfg.n_kv_heads != cfg.n_heads, compute=compute, every_input=every_input, flat=flat,
                   q=cfg.q_dim, seq=spec.seq_len, qk_heads=(cfg.n_heads, cfg.n_kv_heads) if cfg.qk_norm else (0, 0),
                   sandwich=cfg.sandwich_norms, offset=cfg.norm_offset, final_softcap=cfg.final_softcap > 0,
                   attention=tuple(cfg.attention_kind(i, spec.seq_len) for i in range(cfg.n_layers)))


@dataclass(frozen=True)
class BlockBytes:
    total: float  # every block's saved tensors at the end of forward
    recompute: float  # what one recomputed block holds during backward (0 without checkpointing)
    first: float  # what the first block holds in its backward (block 0 is checkpointed whenever any is)


LINEARS = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")


def trained_weights(spec: RunSpec) -> tuple[frozenset[str], frozenset[str]]:
    """(block weights that get gradients, projections with LoRA adapters)."""
    if not spec.lora_rank:
        return frozenset(LINEARS) | {"norm"}, frozenset()
    return frozenset(), frozenset(lora_modules(spec.lora_targets))


def rms_saved(s: Shapes, width: float, rows: float, in_bytes: float, weight_trains: bool, n: int) -> float:
    """An RMSNorm's saved tensors: its input (two fp32 copies of a 16-bit one), the rsqrt (one per row of n
    elements), `normed` in the input's width when the weight trains (the weight's gradient needs it), and
    1 + weight under (1 + w) norms."""
    kept = s.t * width * 4.0 * (2 if in_bytes == 2 else 1) + s.t * rows * 4.0
    kept += s.t * width * in_bytes if weight_trains else 0.0
    return kept + (n * (2.0 if s.compute == "cast" else 4.0) if s.offset else 0.0)


def norm_saved(s: Shapes, weight_trains: bool) -> float:
    """A norm over the residual stream (fp32 but under 16-bit parameters)."""
    return rms_saved(s, s.d, 1, 2.0 if s.compute == "cast" else 4.0, weight_trains, s.d)


def attention_saved(s: Shapes, kind: str, wo_input: bool) -> float:
    """What attention keeps past the projections: SDPA's q, k, v (k, v repeated to the query heads under GQA),
    output and log-sum-exp, and a window's mask; or softcapped, written out (the module's docstring)."""
    lo = 4.0 if s.compute == "fp32" else 2.0
    q = (s.q or s.d) / s.tp
    kv = q if s.gqa else s.kv / s.tp
    if kind != "softcap":
        mask = s.seq * s.seq * lo if kind == "window" else 0.0
        return (2 * s.t * q + 2 * s.t * kv) * lo + s.t * s.heads / s.tp * 4.0 + mask
    scores = s.t * s.seq * s.heads / s.tp  # batch x heads x seq x seq
    kept = (s.t * q + 2 * s.t * kv) * lo + scores * 4.0 + s.seq * s.seq
    kept += scores * lo  # tanh's output
    kept += scores * lo if lo != 4.0 else 0.0  # the softmax's 16-bit copy
    return kept + (s.t * q * lo if wo_input else 0.0)


def extra_norms(s: Shapes, weight_trains: bool) -> float:
    """The families' norms beyond the two per block: per-head q/k norms and the sandwich norms, all over
    projection outputs (16-bit but in fp32)."""
    width = 4.0 if s.compute == "fp32" else 2.0
    hq, hk = s.qk_heads
    kept = 0.0
    if hq:
        head = (s.q or s.d) // s.heads
        kept += rms_saved(s, hq * head / s.tp, hq / s.tp, width, weight_trains, head)
        kept += rms_saved(s, hk * head / s.tp, hk / s.tp, width, weight_trains, head)
    if s.sandwich:
        kept += 2 * rms_saved(s, s.d, 1, width, weight_trains, s.d)
    return kept


def saved_in_block(s: Shapes, spec: RunSpec | None = None, layer: int = 0) -> float:
    """Bytes block `layer` keeps for backward (no checkpointing)."""
    trains, adapted = trained_weights(spec) if spec else (frozenset(LINEARS) | {"norm"}, frozenset())
    if s.flat and adapted:  # autograd keeps what the frozen weights' gradients need, as if they trained
        trains = frozenset(LINEARS) | {"norm"}
    rank = spec.lora_rank if spec else 0
    lo = 4.0 if s.compute == "fp32" else 2.0  # width of projection outputs and attention tensors
    t, d, kv, f, tp, q = s.t, s.d, s.kv, s.f, s.tp, s.q or s.d
    out_width = {"wq": q / tp, "wk": kv / tp, "wv": kv / tp, "wo": d, "w1": f / tp, "w3": f / tp, "w2": d}
    in_width = {"wq": d, "wk": d, "wv": d, "wo": q / tp, "w1": d, "w3": d, "w2": f / tp}

    def needs_input(name: str) -> bool:
        return name in trains or name in adapted or s.every_input

    def norm() -> float:
        return norm_saved(s, "norm" in trains)

    def inputs(names: tuple[str, ...]) -> float:
        """q/k/v (norm 1's output) or w1/w3 (norm 2's): one shared input, or under autocast one 16-bit copy
        per projection whose weight trains."""
        wanted = [n for n in names if needs_input(n)]
        if s.compute == "autocast":
            return sum(t * in_width[n] * 2.0 for n in wanted)
        return t * in_width[names[0]] * lo if wanted else 0.0

    # wo's input is SDPA's output (a view) and w2's the MLP product: both already 16-bit under autocast
    weight_copies = 0.0
    if s.compute == "autocast":  # every projection's 16-bit weight, LoRA's A and B too
        weight_copies = sum(in_width[n] * out_width[n] * 2.0 for n in LINEARS)
        weight_copies += sum((in_width[n] + out_width[n]) * rank * 2.0 for n in adapted)
    lora = sum(t * rank * lo for n in adapted)  # A's output
    attention = attention_saved(s, s.attention[layer] if s.attention else "causal", needs_input("wo"))
    mlp = 3 * t * f / tp * lo + (t * f / tp * lo if needs_input("w2") else 0.0)
    return (2 * norm() + inputs(("wq", "wk", "wv")) + inputs(("w1", "w3")) + weight_copies + attention + mlp
            + lora + extra_norms(s, "norm" in trains))


def block_saved_bytes(s: Shapes, spec: RunSpec,
                      rule: Callable[[Shapes, RunSpec, int], float] | None = None) -> BlockBytes:
    """Every block's saved tensors, checkpointing applied; `rule` counts one block (quant_activations.py's
    for quantized bases), saved_in_block by default."""
    kinds = s.attention or ("causal",) * s.layers  # blocks differ only in how they attend
    cost = {kind: (rule or saved_in_block)(s, spec, kinds.index(kind)) for kind in set(kinds)}
    per = [cost[kind] for kind in kinds]
    if spec.activation_checkpointing == "off":
        return BlockBytes(sum(per), 0.0, per[0])
    res = 2.0 if s.compute == "cast" else 4.0
    every = 1 if spec.activation_checkpointing == "full" else spec.ckpt_every
    checkpointed = range(0, s.layers, every)
    kept = len(checkpointed) * s.t * s.d * res + sum(per) - sum(per[i] for i in checkpointed)
    return BlockBytes(kept, max(per[i] for i in checkpointed), s.t * s.d * res + per[0])


@dataclass(frozen=True)
class HeadBytes:
    forward: float  # the final norm's and the output projection's saved tensors and the log-softmax output
    backward: float  # the log-softmax's and the logits' gradients at the start of backward
    logits: float  # the output projection's output in the compute width; its gradient comes back as wide


def head_bytes(s: Shapes, spec: RunSpec) -> HeadBytes:
    """The final norm, the output projection and the loss.  Their weights train only in full fine-tuning:
    then the norm keeps `normed` and the projection its input (under autocast a 16-bit copy of it); under
    autocast the projection keeps a 16-bit copy of its weight whatever trains.  The loss upcasts the logits
    to fp32 and keeps the log-softmax; 16-bit logits get their gradient back in 16 bits."""
    trains = not spec.lora_rank
    logits = s.t * s.vocab * 4.0
    out = s.t * s.d * (2.0 if s.compute != "fp32" else 4.0) if trains else 0.0
    if s.compute == "autocast":
        out += s.vocab * s.d / s.tp * 2.0
    width = 4.0 if s.compute == "fp32" else 2.0
    capped = s.t * s.vocab * width if s.final_softcap else 0.0  # tanh's output, in the logits' width
    return HeadBytes(forward=norm_saved(s, trains) + out + logits + capped, backward=2 * logits,
                     logits=s.t * s.vocab * width)
