"""Sizes the estimate builds on: stored weights (quantized or not), LoRA adapters, the width of what trains,
the optimizer's state per parameter and tensor parallelism's whole embedding gradient."""

from __future__ import annotations

from harness.core.knobs import lora_modules
from harness.core.memory import MemoryProfile
from harness.core.spec import RunSpec
from harness.models.zoo import ModelConfig

OPTIMIZER_STATE = {"adamw": 8.0, "adamw8bit": 2.0 + 8 / 256, "sgd": 4.0}  # bytes per trainable parameter


QUANT_BYTES = {"none": None, "int8": 1.0 + 4 / 4096, "nf4": 0.5 + 4 / 64,  # per base weight, with scales
               "nf4-torchao": 0.5 + 1 / 64 + 4 / (64 * 256)}  # an int8 scale per 64, one per 256 of those


def weight_bytes(cfg: ModelConfig, spec: RunSpec) -> tuple[float, float]:
    """(block linear weights, everything else) in bytes, as stored: fp32 masters unless pure bf16; quantized
    block weights under --quant."""
    base = 2.0 if spec.dtype == "bf16-pure" else 4.0
    linear = cfg.n_layers * cfg.block_linear_params()
    rest = cfg.param_count() - linear  # embeddings, norms and attention biases
    q = QUANT_BYTES[spec.quant]
    return linear * (q if q is not None else base), rest * base


def lora_params(cfg: ModelConfig, spec: RunSpec) -> int:
    if spec.lora_rank == 0:
        return 0
    kv = cfg.n_kv_heads * cfg.head_dim
    shapes = {"wq": (cfg.dim, cfg.q_dim), "wk": (cfg.dim, kv), "wv": (cfg.dim, kv), "wo": (cfg.q_dim, cfg.dim),
              "w1": (cfg.dim, cfg.ffn_dim), "w3": (cfg.dim, cfg.ffn_dim), "w2": (cfg.ffn_dim, cfg.dim)}
    targets = lora_modules(spec.lora_targets)
    per_layer = sum(spec.lora_rank * (i + o) for name, (i, o) in shapes.items() if name in targets)
    return cfg.n_layers * per_layer


def train_width(spec: RunSpec) -> float:
    """Bytes per element of what trains: bf16 under --dtype bf16-pure, except LoRA adapters, which peft keeps
    in fp32 over a 16-bit base; fp32 otherwise (mixed precision trains fp32 masters)."""
    return 2.0 if spec.dtype == "bf16-pure" and not spec.lora_rank else 4.0


def embedding_grad(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile) -> float:
    """The embedding's whole gradient (vocab x dim) under tensor parallelism, in the compute width.  The
    row-wise sharded embedding's backward yields a Replicate gradient, not one sharded like its weight: plain
    TP keeps it as .grad through the step, FSDP2 splits its shard off (a copy) before reducing."""
    width = 2.0 if spec.dtype == "bf16-pure" or (spec.dtype in ("bf16", "fp16") and prof.casts_params) else 4.0
    return cfg.vocab_size * cfg.dim * width
