"""The model zoo: the shapes of Llama-style decoders and of the families built on them (Mistral, Qwen2/2.5,
Qwen3, Gemma, Gemma 2, Phi-3), from `tiny` (CI) to 70B (predict and simulate only), and the shape a spec
trains (a zoo name, or a custom config carried in the spec as JSON).  No torch here: the model itself is
harness/models/llama.py."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any


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
    # What sets the families apart; the defaults are Llama's (left out of the JSON at their defaults).
    family: str = "llama"  # the config.json's model_type
    head_size: int = 0  # width of one head; 0: dim // n_heads
    attention_bias: str = "none"  # "none", "qkv" (Qwen2) or "all" (q, k, v and o)
    qk_norm: bool = False  # RMSNorm over each head of q and k, before RoPE (Qwen3)
    mlp_act: str = "silu"  # the gated MLP's activation: "silu" (SwiGLU) or "gelu_tanh" (GeGLU, Gemma)
    embed_scale: bool = False  # embeddings multiplied by sqrt(dim) (Gemma)
    norm_offset: bool = False  # RMSNorm scales by 1 + weight (Gemma)
    sandwich_norms: bool = False  # a norm after attention and after the MLP too (Gemma 2)
    attn_softcap: float = 0.0  # attention logits -> cap * tanh(logits / cap); 0: off (Gemma 2)
    final_softcap: float = 0.0  # the same on the output logits
    sliding_window: int = 0  # attention to the last N positions only; 0: off
    sliding_every: int = 1  # the window on layers 0, k, 2k...: 1 every layer (Mistral), 2 alternate (Gemma 2)

    @property
    def head_dim(self) -> int:
        return self.head_size or self.dim // self.n_heads

    @property
    def q_dim(self) -> int:
        """Width of q and of the attention output (n_heads x head_dim; the model width unless head_dim is set)."""
        return self.n_heads * self.head_dim

    def window_of(self, layer: int) -> int:
        """The sliding window of block `layer` (0: it sees every earlier position)."""
        return self.sliding_window if self.sliding_window and layer % self.sliding_every == 0 else 0

    def attention_kind(self, layer: int, seq_len: int) -> str:
        """How block `layer` attends over this many keys (harness/models/attend.py): "softcap", written out;
        "window", SDPA with a mask (a window shorter than the keys); "causal", SDPA's causal kernel."""
        if self.attn_softcap > 0:
            return "softcap"
        return "window" if 0 < self.window_of(layer) < seq_len else "causal"

    def block_linear_params(self) -> int:
        """The weights of one block's seven projections (q, k, v, o and the gated MLP's three)."""
        kv = self.n_kv_heads * self.head_dim
        return 2 * self.dim * self.q_dim + 2 * self.dim * kv + 3 * self.dim * self.ffn_dim

    def param_count(self) -> int:
        """Exact number of parameters, computed from the shapes (matches the model on meta)."""
        kv = self.n_kv_heads * self.head_dim
        bias = {"none": 0, "qkv": self.q_dim + 2 * kv, "all": self.q_dim + 2 * kv + self.dim}[self.attention_bias]
        norms = (4 if self.sandwich_norms else 2) * self.dim + (2 * self.head_dim if self.qk_norm else 0)
        per_layer = self.block_linear_params() + bias + norms
        embed = self.vocab_size * self.dim
        out = 0 if self.tie_embeddings else embed
        return self.n_layers * per_layer + embed + out + self.dim

    def flops_per_token(self, seq_len: int, frozen_base: bool = False) -> int:
        """Training FLOPs per token: 6 x non-embedding params + attention (PaLM appendix B convention).  With a
        frozen base (LoRA) the weight-gradient matmuls are skipped: 4 x params (adapters are negligible)."""
        dense = self.param_count() - self.vocab_size * self.dim
        attn = 12 * self.n_layers * self.n_heads * self.head_dim * seq_len
        return (4 if frozen_base else 6) * dense + attn

    def to_json(self) -> str:
        """The fields as JSON; a family field at its default is left out, so a Llama shape's JSON (and every
        record that carries one) reads as it did before the families."""
        values = asdict(self)
        for name in FAMILY_FIELDS:
            if values[name] == _DEFAULTS[name]:
                del values[name]
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls(**json.loads(text))


FAMILY_FIELDS = ("family", "head_size", "attention_bias", "qk_norm", "mlp_act", "embed_scale", "norm_offset",
                 "sandwich_norms", "attn_softcap", "final_softcap", "sliding_window", "sliding_every")
_DEFAULTS = {f.name: f.default for f in fields(ModelConfig)}

_LLAMA2: dict[str, Any] = dict(n_layers=32, n_heads=32, n_kv_heads=32, dim=4096, ffn_dim=11008, vocab_size=32000)
_GEMMA: dict[str, Any] = dict(family="gemma", head_size=256, mlp_act="gelu_tanh", embed_scale=True, norm_offset=True)

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
        # one shape per family, at the size users fine-tune (each as its config.json on the Hub)
        ModelConfig("mistral-7b", dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336,
                    vocab_size=32768, rope_theta=1000000.0, family="mistral"),
        ModelConfig("qwen2.5-7b", dim=3584, n_layers=28, n_heads=28, n_kv_heads=4, ffn_dim=18944,
                    vocab_size=152064, norm_eps=1e-6, rope_theta=1000000.0, family="qwen2", attention_bias="qkv"),
        ModelConfig("qwen3-8b", dim=4096, n_layers=36, n_heads=32, n_kv_heads=8, ffn_dim=12288,
                    vocab_size=151936, norm_eps=1e-6, rope_theta=1000000.0, family="qwen3",
                    qk_norm=True),
        ModelConfig("gemma-7b", dim=3072, n_layers=28, n_heads=16, n_kv_heads=16, ffn_dim=24576,
                    vocab_size=256000, tie_embeddings=True, norm_eps=1e-6, **_GEMMA),
        ModelConfig("gemma2-9b", dim=3584, n_layers=42, n_heads=16, n_kv_heads=8, ffn_dim=14336,
                    vocab_size=256000, tie_embeddings=True, norm_eps=1e-6, **{**_GEMMA, "family": "gemma2"},
                    sandwich_norms=True, attn_softcap=50.0, final_softcap=30.0, sliding_window=4096,
                    sliding_every=2),
        ModelConfig("phi3-mini", dim=3072, n_layers=32, n_heads=32, n_kv_heads=32, ffn_dim=8192,
                    vocab_size=32064, family="phi3", sliding_window=2047),
    ]
}


def get_config(name: str) -> ModelConfig:
    return ZOO[name]


def config_for(spec: Any) -> ModelConfig:
    """The shape a RunSpec trains: its custom config (--model-config / --set) if any, else the zoo's."""
    if spec.model_config:
        return ModelConfig.from_json(spec.model_config)
    return ZOO[spec.model]
