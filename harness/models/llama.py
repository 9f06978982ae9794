"""The zoo's model: a Llama-style decoder (RMSNorm, RoPE, SwiGLU, grouped-query attention, SDPA), built on the
meta device, with what sets the other families apart (ModelConfig's family fields): biases on the attention
projections, q/k norms, a head width of its own, GeGLU, scaled embeddings, (1 + w) norms, norms after attention
and the MLP, softcapped and sliding-window attention (harness/models/attend.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.attend import attend
from harness.models.zoo import ModelConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from harness.models.kv_cache import LayerCache


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, offset: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.offset = offset  # scale by 1 + weight (Gemma)
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * (1 + self.weight if self.offset else self.weight)


def rope_tables(head_dim: int, seq_len: int, theta: float, device: torch.device) -> torch.Tensor:
    """cos/sin table of shape (seq_len, head_dim // 2, 2)."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv)
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """x: (batch, seq, heads, head_dim); rotates consecutive pairs."""
    pairs = x.float().unflatten(-1, (-1, 2))
    cos, sin = table[: x.shape[1], None, :, 0], table[: x.shape[1], None, :, 1]
    real = pairs[..., 0] * cos - pairs[..., 1] * sin
    imag = pairs[..., 0] * sin + pairs[..., 1] * cos
    return torch.stack([real, imag], dim=-1).flatten(-2).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        self.head_dim = cfg.head_dim
        self.n_rep = cfg.n_heads // cfg.n_kv_heads
        kv = cfg.n_kv_heads * cfg.head_dim
        bias = cfg.attention_bias != "none"
        self.wq = nn.Linear(cfg.dim, cfg.q_dim, bias=bias)
        self.wk = nn.Linear(cfg.dim, kv, bias=bias)
        self.wv = nn.Linear(cfg.dim, kv, bias=bias)
        self.wo = nn.Linear(cfg.q_dim, cfg.dim, bias=cfg.attention_bias == "all")
        if cfg.qk_norm:
            self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps, cfg.norm_offset)
            self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps, cfg.norm_offset)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, cache: LayerCache | None = None,
                pos: int = 0) -> torch.Tensor:
        b, s, _ = x.shape
        rope = rope[pos:] if pos else rope  # generation: positions pos.. of a cached sequence
        # -1 heads: under tensor parallelism each rank holds a slice of the heads.
        q, k = self.wq(x).view(b, s, -1, self.head_dim), self.wk(x).view(b, s, -1, self.head_dim)
        if self.cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        v = self.wv(x).view(b, s, -1, self.head_dim)
        if cache is not None:  # generation: keys and values of earlier positions come from the cache
            return self.wo(cache.attend(q, k, v, pos, self.n_rep, self.cfg.attn_softcap,
                                        self.cfg.window_of(self.layer)))
        if self.n_rep > 1:
            k = k.repeat_interleave(self.n_rep, dim=2)
            v = v.repeat_interleave(self.n_rep, dim=2)
        if self.cfg.attention_kind(self.layer, k.shape[1]) != "causal":  # softcapping, or a short window
            out = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.cfg.attn_softcap,
                         self.cfg.window_of(self.layer))
        else:
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 is_causal=True)
        return self.wo(out.transpose(1, 2).reshape(b, s, -1))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.gelu = cfg.mlp_act == "gelu_tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.gelu(self.w1(x), approximate="tanh") if self.gelu else F.silu(self.w1(x))
        return self.w2(gate * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.norm_offset)
        self.attention = Attention(cfg, layer)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.norm_offset)
        self.feed_forward = FeedForward(cfg)
        self.sandwich = cfg.sandwich_norms
        if cfg.sandwich_norms:  # Gemma 2: each branch's output normed before the residual add
            self.post_attention_norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.norm_offset)
            self.post_ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.norm_offset)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, cache: LayerCache | None = None,
                pos: int = 0) -> torch.Tensor:
        if self.sandwich:
            x = x + self.post_attention_norm(self.attention(self.attention_norm(x), rope, cache, pos))
            return x + self.post_ffn_norm(self.feed_forward(self.ffn_norm(x)))
        x = x + self.attention(self.attention_norm(x), rope, cache, pos)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, max_seq_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_seq_len = max_seq_len
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.norm_offset)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.register_buffer("rope", torch.empty(max_seq_len, cfg.head_dim // 2, 2), persistent=False)

    def forward(self, tokens: torch.Tensor, cache: Sequence[LayerCache] | None = None,
                pos: int = 0, chunks: int = 0) -> torch.Tensor | list[torch.Tensor]:
        """Logits of every position; with a KV cache (generation), `tokens` sit at positions pos.. after the
        cached ones.  `chunks` N > 0: the logits as a list of N pieces along the sequence, each projected
        apart, as torchtune's chunked output (for harness/models/chunked_loss.py)."""
        h = self.tok_embeddings(tokens)
        if self.cfg.embed_scale:  # Gemma: by sqrt(dim)
            h = h * self.cfg.dim**0.5
        for i, layer in enumerate(self.layers):
            h = layer(h, self.rope, cache[i], pos) if cache is not None else layer(h, self.rope)
        if chunks:  # in forward, where FSDP has the root's parameters gathered
            return [self.project(piece) for piece in self.norm(h).tensor_split(chunks, dim=1)]
        return self.project(self.norm(h))

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """The output projection (and the final softcap) of final-norm outputs: logits."""
        logits = self.output(h)
        if self.cfg.final_softcap > 0:
            logits = torch.tanh(logits / self.cfg.final_softcap) * self.cfg.final_softcap
        return logits


def build_model(cfg: ModelConfig, max_seq_len: int) -> Transformer:
    """The model on the meta device: shapes only, no storage."""
    with torch.device("meta"):
        return Transformer(cfg, max_seq_len)
