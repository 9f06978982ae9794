"""The source documents' rules of thumb (bytes per parameter), reproduced for a model beside the estimate."""

from __future__ import annotations

from harness.core.units import GB, GIB
from harness.models.zoo import ModelConfig


def source_arithmetic(cfg: ModelConfig) -> dict[str, float]:
    """The rule-of-thumb figures the source documents give, reproduced for this model (GiB)."""
    n = cfg.param_count()
    return {"weights fp32": n * 4 / GIB, "weights fp16": n * 2 / GIB, "weights int8": n * 1 / GIB,
            "weights int4": n * 0.5 / GIB, "AdamW states (8 B/param)": n * 8 / GIB,
            "8-bit AdamW states (2 B/param)": n * 2 / GIB, "SGD momentum (4 B/param)": n * 4 / GIB}


def int8_training_example(params: float = 6e9) -> dict[str, float]:
    """The source's "6B model in int8" training budget in GB: 1 B/param weights, 1 B/param gradients,
    2 B/param 8-bit AdamW states, 1.3 GB of activations as it states them."""
    parts = {"weights": params * 1 / GB, "gradients": params * 1 / GB, "optimizer": params * 2 / GB,
             "activations": 1.3}
    return {**parts, "total": sum(parts.values())}
