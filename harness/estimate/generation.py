"""predict for the generate workload: an analytic per-rank memory model of loading, prefill and decode
(`spacetime estimate --workload generate`), counted from the loop's code (harness/models/generate.py, the KV
cache in harness/models/kv_cache.py, the blocks in harness/models/llama.py), all under no_grad.

Rows = batch x beams (beam search expands every prompt before the prefill).  Per rank:
  weights      as loaded (load_bytes.py), split by the strategy: whole (single, ddp), 1/world (FSDP full
               shard), 1/tp (tp); under --offload one module's weights at a time (the rest in host memory).
  kv_cache     2 x layers x kv heads (1/tp) x head dim x positions x rows x width.  static: allocated for
               prompt + new tokens before the prefill; dynamic: grows by torch.cat to the longest the loop
               feeds, prompt + new - 1 (the last token is chosen, never fed back).
  activations  the largest live set of one block's forward: the residual, a norm's output, q/k/v, the keys
               and values repeated to the query heads (grouped-query attention), SDPA's output, the MLP's
               three intermediates; at prompt length in the prefill, one token per row in decode.
  logits       the model returns every position's logits: rows x prompt x vocab in the compute width after
               the prefill (gathered whole under tp, beside the rank's shard); rows x vocab per decode step;
               beam search adds log-softmax and its sum in fp32 and keeps the last step's scores.
               A quantized projection adds its matmul's own temporaries (quant_matmul).
  buffers      the rotary table (fp32) and the token ids: the prompt, beam search's sequences.
  temporaries  torch.cat's new tensors beside one layer's old ones (dynamic cache); beam search's reorder
               (index_select of one layer's keys, or keys and values for the dynamic cache).
  comm         FSDP full shard: what is gathered at each moment of a forward (fsdp_comm); every forward,
               prefill or decode step, gathers every unit again.  ZeRO-3: generation_zero3.py.
  context      the CUDA context on a CUDA target (harness/core/memory.py).
The families' extras are in the weights (biases, q/k norms: outside the quantized projections) but not in the
live sets; softcapped attention, a window's mask and the final softcap: generation_attention.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import Unsupported
from harness.core.memory import CUDA_CONTEXT_BYTES
from harness.core.spec import RunSpec
from harness.estimate.generation_attention import attention, final_softcap
from harness.estimate.generation_prediction import GEN_CATEGORIES, GenPrediction
from harness.estimate.generation_zero3 import AT_HEAD, IN_BLOCKS, Zero3Gathers, zero3_comm
from harness.estimate.load_bytes import INT4_PAD_IN, compute_width, linear_shapes, loaded_weights
from harness.models.zoo import ModelConfig, config_for

GENERATION_STRATEGIES = ("single", "ddp", "fsdp_full_shard", "tp", "zero3")


@dataclass(frozen=True)
class GenShape:
    """The sizes one rank's generation works with."""

    rows: int  # batch x beams
    prompt: int
    new: int
    width: float  # bytes per element of activations, logits and the cache
    d: int
    qd: float  # q width on this rank (heads x head dim / tp)
    kvd: float  # k and v width on this rank
    fd: float  # MLP width on this rank
    n_rep: int  # query heads per kv head
    vocab: int
    layers: int
    tp: int
    quant: str = "none"
    device: str = "cuda"
    head_dim: int = 0
    softcap: bool = False  # attention written out (harness/estimate/generation_attention.py)
    windows: tuple[int, ...] = (0,)  # each block's window (0: none)
    final_softcap: bool = False

    @classmethod
    def of(cls, cfg: ModelConfig, spec: RunSpec, tp: int) -> GenShape:
        return cls(rows=spec.batch_size * spec.num_beams, prompt=spec.prompt_len, new=spec.new_tokens,
                   width=compute_width(spec), d=cfg.dim, qd=cfg.n_heads * cfg.head_dim / tp,
                   kvd=cfg.n_kv_heads * cfg.head_dim / tp, fd=cfg.ffn_dim / tp,
                   n_rep=cfg.n_heads // cfg.n_kv_heads, vocab=cfg.vocab_size, layers=cfg.n_layers, tp=tp,
                   quant=spec.quant, device=spec.device, head_dim=cfg.head_dim, softcap=cfg.attn_softcap > 0,
                   windows=tuple({cfg.window_of(i) for i in range(cfg.n_layers)}), final_softcap=cfg.final_softcap > 0)

    def layer_kv(self, positions: float) -> float:
        """One layer's keys and values over `positions` positions."""
        return 2 * self.rows * self.kvd * positions * self.width

    @property
    def longest(self) -> int:
        """The positions the cache holds after the last decode step (the last new token is never fed)."""
        return self.prompt + self.new - 1


def kv_cache_bytes(g: GenShape, kind: str) -> float:
    """The cache at the end of generation (the record's kv_cache_bytes)."""
    return g.layers * g.layer_kv(g.prompt + g.new if kind == "static" else g.longest)


def block_live(g: GenShape, t: int, keys: int) -> float:
    """The most one block's forward holds at once (beyond weights and cache), for `t` query tokens over `keys`
    cached positions: the largest of the norm, RoPE, attention and MLP moments."""
    w, d = g.width, g.d
    resid = t * d * w  # the block's input, alive to the residual add
    normed = t * d * w
    # RMSNorm upcasts a 16-bit input twice (its pow and its multiply) and squares one copy: three fp32 copies
    norm = resid + t * d * 4.0 * (3 if w < 4 else 2)
    # RoPE's pairs in fp32 (a copy of a 16-bit input), the rotated halves and their stack
    rope_tmp = 12.0 if w < 4 else 8.0
    rope_q = resid + normed + t * g.qd * (w + rope_tmp)
    rope_k = resid + normed + t * g.qd * w + t * g.kvd * (w + rope_tmp)
    qkv = t * (g.qd + 2 * g.kvd) * w
    repeated = 2 * (g.rows * g.qd * keys * w) if g.n_rep > 1 else 0.0  # keys and values per query head
    attend = max(attention(t, keys, g.rows, g.qd / g.head_dim, g.head_dim, w, g.softcap, win) for win in g.windows)
    sdpa = resid + normed + qkv + repeated + attend
    out_proj = resid + normed + qkv + t * g.qd * w + t * d * w
    mlp = resid + normed + 3 * t * g.fd * w  # silu(w1 x), w3 x and their product
    # w3 computing beside silu(w1 x): a quantized projection's own temporaries
    mlp_quant = resid + normed + 2 * t * g.fd * w + quant_matmul(g, t) if g.quant != "none" else 0.0
    return max(norm, rope_q, rope_k, sdpa, out_proj, mlp, mlp_quant)


def quant_matmul(g: GenShape, t: int) -> float:
    """What a bitsandbytes projection (d in, the MLP width out) allocates while `t` rows multiply (inference,
    threshold 0).  int8 quantizes the input (int8 and one fp32 scale per row) and accumulates in int32; on the
    CPU the dequantization then holds the outer product of the scales and the scaled result in fp32 beside
    it (bitsandbytes' default kernel), on CUDA one kernel writes the output.  nf4 on the CPU multiplies from
    the packed weights with 8 bytes per input element; on CUDA it dequantizes the whole weight to the compute
    width unless one row multiplies (the gemv kernel).  torchao's int8 (weight-only) and NF4 linears make the
    whole weight in the input's dtype on each call, on any device (NF4 through int64 indices and the scaled
    halves); its int4 tinygemm pads the input.  Beyond the two MLP-wide tensors the caller counts: at w3, the
    gate and w3's product; at w2 (the larger weight moment), the gate and its input."""
    n, out, down = g.d * g.fd, t * g.fd * g.width, t * g.d * g.width  # the weight's elements; w3's, w2's product
    if g.quant == "int8-torchao":  # the weight in the input's dtype beside the product, then the scaled product
        return max(n * g.width + down, 2 * down, out)
    if g.quant == "nf4-torchao":  # get_original_weight: two int64 index tensors, the two halves looked up and
        return max(n * (8.0 + 3 * g.width), n * g.width + down)  # scaled, their stack; then the weight alone
    if g.quant == "int4-torchao":  # tinygemm: the input padded to a multiple of 1024 columns
        return t * -(-g.d // INT4_PAD_IN) * INT4_PAD_IN * g.width
    rows_in = t * g.d * 1.0 + t * 4.0
    if g.quant == "int8":
        return rows_in + t * g.fd * (12.0 if g.device == "cpu" else 4.0)
    if g.device == "cpu":
        return t * g.d * 8.0
    return g.d * g.fd * g.width if t > 1 else 0.0


def head_live(g: GenShape, t: int) -> float:
    """The final norm and the output projection over `t` positions: the hidden state, its norm and the logits
    (under tp each rank's shard beside the gathered whole)."""
    logits = t * g.vocab * g.width * (1 + 1 / g.tp if g.tp > 1 else 1)
    logits += final_softcap(t * g.vocab * g.width) if g.final_softcap else 0.0
    norm = t * g.d * g.width + t * g.d * 4.0 * (3 if g.width < 4 else 2)
    return max(norm, 2 * t * g.d * g.width + logits)


@dataclass(frozen=True)
class Placement:
    """Where the strategy and --offload put the weights of one rank."""

    weights: float  # on the device, all the time
    buffers: float  # the rotary table (fp32, prompt + new positions) and the prompt's token ids
    host: float  # in host memory (or on disk)
    root: float = 0.0  # FSDP: the root unit (embedding, final norm, output) as gathered
    block: float = 0.0  # FSDP: one block as gathered
    zero3: Zero3Gathers | None = None  # ZeRO-3: what its hooks gather (generation_zero3.py)


def placement(cfg: ModelConfig, spec: RunSpec) -> tuple[Placement, int]:
    """(where the weights go, the tensor-parallel degree)."""
    if spec.strategy not in GENERATION_STRATEGIES:
        raise Unsupported(f"spacetime estimate models generation under {', '.join(GENERATION_STRATEGIES)}; "
                          f"not {spec.strategy}")
    w = loaded_weights(cfg, spec)
    # the rotary table (fp32, a buffer) and the prompt's token ids (int64): on a CPU a data-parallel rank's
    # rows are a view of the whole batch's
    dp = spec.nproc if spec.strategy in ("ddp", "fsdp_full_shard", "zero3") and spec.device == "cpu" else 1
    rope = (spec.prompt_len + spec.new_tokens) * cfg.head_dim * 4.0 + spec.batch_size * dp * spec.prompt_len * 8.0
    tp = (spec.tp or spec.nproc) if spec.strategy == "tp" else 1
    if spec.offload != "none":  # one module's weights on the device at a time
        width = compute_width(spec)
        largest = max([cfg.vocab_size * cfg.dim * width] + [i * o * width for i, o in linear_shapes(cfg)])
        return Placement(largest / tp, rope, w.total / tp), tp
    if spec.strategy == "fsdp_full_shard" and spec.nproc > 1:
        norms = 2 * cfg.dim * compute_width(spec)  # each block's two norms: its unit's, not the root's
        root = w.rest - cfg.n_layers * norms
        return Placement(w.total / spec.nproc, rope, 0.0, root, w.block(cfg.n_layers) + norms), 1
    if spec.strategy == "zero3":
        return Placement(w.total / spec.nproc, rope, 0.0, zero3=Zero3Gathers.of(cfg, spec)), 1
    return Placement(w.total / tp, rope, 0.0), tp


def prefill_phases(g: GenShape, spec: RunSpec) -> dict[str, dict[str, float]]:
    """What the prefill holds beside the weights, at each moment that can peak.  Beam search's first step
    (log-softmax over the prefill's last position, then the cache's first reorder) belongs to it."""
    t = g.rows * g.prompt
    static = spec.kv_cache == "static"
    kv = kv_cache_bytes(g, "static") if static else g.layers * g.layer_kv(g.prompt)
    logits = t * g.vocab * g.width  # the prefill's logits, alive until the first token is chosen
    phases = {"prefill blocks": {"kv_cache": kv, "activations": block_live(g, t, g.prompt)},
              "prefill logits": {"kv_cache": kv, "logits": head_live(g, t)}}
    if spec.num_beams > 1:
        phases["first beam step"] = {"kv_cache": kv, "logits": logits + 2 * g.rows * g.vocab * 4.0}
        if spec.new_tokens > 1:
            phases["first reorder"] = {"kv_cache": kv, "logits": g.rows * g.vocab * 4.0,
                                       "temporaries": _reorder(g, static, g.prompt)}
    return _with_ids(phases, g.rows * g.prompt * 8.0 if spec.num_beams > 1 else 0.0)


def _with_ids(phases: dict[str, dict[str, float]], ids: float) -> dict[str, dict[str, float]]:
    """Each phase with the token ids generation holds beside the prompt (int64): beam search's sequences,
    greedy decoding's chosen tokens."""
    return {name: {**extra, "buffers": ids} for name, extra in phases.items()}


def _reorder(g: GenShape, static: bool, positions: int) -> float:
    """Beam search's reorder of one layer: the static cache copies index_select's keys back in place (then
    the values); the dynamic cache replaces keys and values together."""
    return g.layer_kv(g.prompt + g.new) / 2 if static else g.layer_kv(positions)


def decode_phases(g: GenShape, spec: RunSpec) -> dict[str, dict[str, float]]:
    """What the last decode step holds beside the weights (the cache is at its longest then)."""
    if spec.new_tokens < 2:
        return {}
    static = spec.kv_cache == "static"
    kv = kv_cache_bytes(g, spec.kv_cache)
    scores = g.rows * g.vocab * 4.0 if spec.num_beams > 1 else 0.0  # the last step's log-probabilities
    phases = {"decode blocks": {"kv_cache": kv, "activations": block_live(g, g.rows, g.longest),
                                "logits": scores},
              "decode logits": {"kv_cache": kv, "logits": scores + head_live(g, g.rows)}}
    if not static:  # the last layer's torch.cat: its old keys and values beside the new ones
        phases["cache growth"] = {"kv_cache": kv, "temporaries": g.layer_kv(g.longest - 1), "logits": scores}
    if spec.num_beams > 1:
        # log-softmax of this step beside the last step's scores: the logits (and an fp32 copy of 16-bit
        # ones, or the sum) with the log-softmax and the new scores
        phases["beam step"] = {"kv_cache": kv, "logits": g.rows * g.vocab * (g.width + 12.0)}
        if spec.new_tokens > 2:
            before = kv if static else g.layers * g.layer_kv(g.longest - 1)
            phases["beam reorder"] = {"kv_cache": before, "logits": scores,
                                      "temporaries": _reorder(g, static, g.longest - 1)}
    ids = g.rows * g.longest * 8.0 if spec.num_beams > 1 else spec.batch_size * (spec.new_tokens - 1) * 8.0
    return _with_ids(phases, ids)


def fsdp_comm(phases: dict[str, dict[str, float]], where: Placement, g: GenShape, t: int, label: str,
              cache: float) -> dict[str, dict[str, float]]:
    """FSDP full shard's gathered weights at each moment of a forward over `t` tokens (no_grad, every unit
    resharded after its forward): the root and two blocks (the one computing and the next one, prefetched)
    inside the blocks, the root and the last block at the output projection (that block is resharded after
    the root's forward), nothing after the forward.  A forward starts with the root's all-gather output held
    while the first block's is made (on a CPU gloo gathers each into a buffer of its own size first), beside
    the embedding's output and the cache as it is before the forward (`cache`).  Found against measured runs
    (benchmarks/results/generation-accuracy-cpu.json)."""
    if where.zero3:
        return zero3_comm(phases, where.zero3, t * g.d * g.width, label, cache)
    if not where.root:
        return phases
    gloo = g.device == "cpu"
    for name, extra in phases.items():
        extra["comm"] = (where.root + 2 * where.block if name in IN_BLOCKS else
                         where.root + where.block if name in AT_HEAD else 0.0)
    if phases:
        start = {"kv_cache": cache, "activations": t * g.d * g.width,
                 "buffers": next(iter(phases.values())).get("buffers", 0.0),
                 "comm": 2 * where.root + (2 if gloo else 1) * where.block}
        phases = {f"{label} forward start": start, **phases}
    return phases


def predict_generation(spec: RunSpec, device: str = "cuda") -> GenPrediction:
    """The per-rank peak of generating with `spec` on `device` (which decides the CUDA context)."""
    cfg = config_for(spec)
    where, tp = placement(cfg, spec)
    g = GenShape.of(cfg, spec, tp)
    held = {"weights": where.weights, "buffers": where.buffers}
    static = spec.kv_cache == "static"
    groups: dict[str, dict[str, dict[str, float]]] = {
        "load_bytes": {"load": {}},
        "prefill_peak_bytes": fsdp_comm(prefill_phases(g, spec), where, g, g.rows * g.prompt, "prefill",
                                        kv_cache_bytes(g, "static") if static else 0.0),
        "decode_peak_bytes": fsdp_comm(decode_phases(g, spec), where, g, g.rows, "decode",
                                       kv_cache_bytes(g, "static") if static else g.layers * g.layer_kv(g.longest - 1))}
    peaks: dict[str, int] = {}
    best, best_parts = "", {"weights": -1}
    for figure, phases in groups.items():
        peaks[figure] = 0
        for name, extra in phases.items():
            parts = {k: int(held.get(k, 0.0) + extra.get(k, 0.0)) for k in GEN_CATEGORIES[:-1]}
            total = sum(parts.values())
            peaks[figure] = max(peaks[figure], total)
            if total > sum(best_parts.values()):
                best, best_parts = name, parts
    context = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    breakdown = best_parts | {"context": context}
    return GenPrediction(spec, breakdown, best, int(where.host), peaks, int(kv_cache_bytes(g, spec.kv_cache)))
