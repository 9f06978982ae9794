"""The model zoo: the shapes of Llama-style decoders, from `tiny` (CI) to 70B (predict and simulate only), and
the shape a spec trains (a zoo name, or a custom config carried in the spec as JSON).  No torch here: the
model itself is harness/models/llama.py."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls(**json.loads(text))


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
        return ModelConfig.from_json(spec.model_config)
    return ZOO[spec.model]
