"""Model zoo: Llama-style decoder configs and the model itself (RMSNorm, RoPE, SwiGLU, GQA, SDPA).

Models are built on the meta device; a strategy shards/wraps them and then calls `materialize`, which
allocates storage on the real device and fills it deterministically from the seed.  The values of a
parameter depend only on (seed, parameter name, device type), never on how it is sharded, so every
strategy starts from the same weights as `single`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    name: str
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    tie_embeddings: bool = False
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    measurable: bool = True  # False: too large to run for real; predict/simulate only

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def param_count(self) -> int:
        """Exact number of parameters, computed from the shapes (matches the model on meta)."""
        kv = self.n_kv_heads * self.head_dim
        attn = 2 * self.dim * self.dim + 2 * self.dim * kv
        mlp = 3 * self.dim * self.ffn_dim
        per_layer = attn + mlp + 2 * self.dim
        embed = self.vocab_size * self.dim
        out = 0 if self.tie_embeddings else embed
        return self.n_layers * per_layer + embed + out + self.dim

    def flops_per_token(self, seq_len: int, frozen_base: bool = False) -> int:
        """Training FLOPs per token: 6 x non-embedding params + attention (PaLM appendix B convention).  With a
        frozen base (LoRA) the weight-gradient matmuls are skipped: 4 x params (adapters are negligible)."""
        dense = self.param_count() - self.vocab_size * self.dim
        attn = 12 * self.n_layers * self.n_heads * self.head_dim * seq_len
        return (4 if frozen_base else 6) * dense + attn


_LLAMA2: dict[str, Any] = dict(n_layers=32, n_heads=32, n_kv_heads=32, dim=4096, ffn_dim=11008, vocab_size=32000)

ZOO: dict[str, ModelConfig] = {
    c.name: c
    for c in [
        ModelConfig("tiny", dim=256, n_layers=4, n_heads=8, n_kv_heads=4, ffn_dim=768, vocab_size=4096),
        ModelConfig("125m", dim=768, n_layers=12, n_heads=12, n_kv_heads=12, ffn_dim=2048, vocab_size=32000),
        ModelConfig("350m", dim=1024, n_layers=24, n_heads=16, n_kv_heads=16, ffn_dim=2816, vocab_size=32000),
        ModelConfig("1b", dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_dim=8192,
                    vocab_size=128256, tie_embeddings=True, rope_theta=500000.0),
        ModelConfig("3b", dim=3072, n_layers=28, n_heads=24, n_kv_heads=8, ffn_dim=8192,
                    vocab_size=128256, tie_embeddings=True, rope_theta=500000.0),
        ModelConfig("7b", **_LLAMA2),
        ModelConfig("8b", dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336,
                    vocab_size=128256, rope_theta=500000.0),
        ModelConfig("baichuan-7b", **{**_LLAMA2, "vocab_size": 64000}),
        ModelConfig("13b", dim=5120, n_layers=40, n_heads=40, n_kv_heads=40, ffn_dim=13824,
                    vocab_size=32000, measurable=False),
        ModelConfig("70b", dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, ffn_dim=28672,
                    vocab_size=128256, rope_theta=500000.0, measurable=False),
    ]
}


def get_config(name: str) -> ModelConfig:
    return ZOO[name]


def config_for(spec: Any) -> ModelConfig:
    """The shape a RunSpec trains: its custom config (--model-config / --set) if any, else the zoo's."""
    if spec.model_config:
        from harness.custom_model import from_json

        return from_json(spec.model_config)
    return ZOO[spec.model]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


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
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.head_dim = cfg.head_dim
        self.n_rep = cfg.n_heads // cfg.n_kv_heads
        kv = cfg.n_kv_heads * cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wk = nn.Linear(cfg.dim, kv, bias=False)
        self.wv = nn.Linear(cfg.dim, kv, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        # -1 heads: under tensor parallelism each rank holds a slice of the heads.
        q = apply_rope(self.wq(x).view(b, s, -1, self.head_dim), rope)
        k = apply_rope(self.wk(x).view(b, s, -1, self.head_dim), rope)
        v = self.wv(x).view(b, s, -1, self.head_dim)
        if self.n_rep > 1:
            k = k.repeat_interleave(self.n_rep, dim=2)
            v = v.repeat_interleave(self.n_rep, dim=2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True)
        return self.wo(out.transpose(1, 2).reshape(b, s, -1))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rope)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, max_seq_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_seq_len = max_seq_len
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.register_buffer("rope", torch.empty(max_seq_len, cfg.head_dim // 2, 2), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h, self.rope)
        return self.output(self.norm(h))


def build_model(cfg: ModelConfig, max_seq_len: int) -> Transformer:
    """The model on the meta device: shapes only, no storage."""
    with torch.device("meta"):
        return Transformer(cfg, max_seq_len)


def _param_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def init_value(name: str, shape: torch.Size, seed: int, device: torch.device) -> torch.Tensor:
    """The whole value of parameter `name` (its canonical name, see adapters.canonical_name).  LoRA starts as
    peft starts it: B = 0, so the adapted model equals the base; A random like the weights."""
    if ".lora_B." in name:
        return torch.zeros(shape, device=device)
    if name.endswith("norm.weight"):
        return torch.ones(shape, device=device)
    gen = torch.Generator(device=device).manual_seed(_param_seed(seed, name))
    return torch.randn(shape, generator=gen, device=device) * 0.02


def _fake() -> bool:
    """Under fake tensors (`spacetime simulate`) there are no values to fill: storage is all that exists."""
    from torch._guards import detect_fake_mode

    return detect_fake_mode() is not None


@torch.no_grad()
def materialize(model: nn.Module, device: torch.device, seed: int,
                buffer_device: torch.device | None = None) -> None:
    """Allocate storage for a meta (possibly sharded) model on `device` and fill it deterministically.

    Each parameter is generated whole from its own seed and then cut to this rank's shard, so the values
    are independent of the sharding (DTensor placements of FSDP2, TP or both).  `buffer_device` is where
    non-parameter buffers live when parameters are kept elsewhere (CPU offload).
    """
    from torch.distributed.tensor import DTensor, distribute_tensor

    from harness.adapters import canonical_name

    model.to_empty(device=device)
    for name, param in model.named_parameters() if not _fake() else ():
        full = init_value(canonical_name(name), param.shape, seed, device)
        if isinstance(param, DTensor):
            shard = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
            param.to_local().copy_(shard.to_local())
        else:
            param.copy_(full)
    cfg: ModelConfig = model.cfg  # type: ignore[assignment]
    max_seq_len: int = model.max_seq_len  # type: ignore[assignment]
    model.rope = rope_tables(cfg.head_dim, max_seq_len, cfg.rope_theta, buffer_device or device)
