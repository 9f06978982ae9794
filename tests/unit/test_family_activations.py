"""The activation model on the families' blocks (harness/estimate/activations.py): a head width apart from the
model's, attention biases, q/k norms, GeGLU and (1 + w) norms, sandwich norms, softcapped and sliding-window
attention, each block's saved tensors counted as tests/unit/test_activations.py counts the zoo's."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from harness.core.spec import RunSpec
from harness.estimate.activations import Shapes, head_bytes, saved_in_block
from harness.models.hf_config import apply_sets
from harness.models.zoo import ZOO, config_for
from harness.train.step import loss_fn
from tests.unit.test_activations import CASES, _model, _saved_bytes

BASE = ["n_layers=2", "dim=64", "n_heads=4", "n_kv_heads=2", "ffn_dim=96", "vocab_size=128"]
VARIANTS = {  # a family's fields on a small shape; 16 tokens a sequence, so a window of 5 slides
    "head_dim": ["head_dim=8"],
    "qwen2": ["attention_bias=qkv"],
    "qwen3": ["qk_norm=true", "head_dim=24"],
    "gemma": ["mlp_act=gelu_tanh", "norm_offset=true", "embed_scale=true", "head_dim=24"],
    "gemma2": ["mlp_act=gelu_tanh", "norm_offset=true", "sandwich_norms=true", "attn_softcap=50",
               "final_softcap=30", "sliding_window=5", "sliding_every=2"],
    "window": ["sliding_window=5", "sliding_every=2"],
}


def _spec(variant: str, dtype: str, rank: int) -> RunSpec:
    cfg = apply_sets(ZOO["tiny"], BASE + VARIANTS[variant])
    return RunSpec(model=cfg.name, model_config=cfg.to_json(), batch_size=2, seq_len=16, dtype=dtype,
                   lora_rank=rank)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("dtype", "rank", "casts_params"), CASES)
def test_each_block_of_a_family_is_counted_exactly(variant: str, dtype: str, rank: int,
                                                   casts_params: bool) -> None:
    spec = _spec(variant, dtype, rank)
    model, x = _model(spec, casts_params)
    shapes = Shapes.of(config_for(spec), spec, casts_params=casts_params)
    for layer in (0, 1):  # under a window on alternate layers, one block slides and one does not
        measured = _saved_bytes(model.layers[layer], x, model.rope, autocast=dtype == "bf16" and not casts_params)
        assert measured == saved_in_block(shapes, spec, layer)


def test_a_window_keeps_its_mask_and_softcapping_its_scores() -> None:
    spec = _spec("window", "bf16", 0)
    shapes = Shapes.of(config_for(spec), spec)
    assert shapes.attention == ("window", "causal")
    assert saved_in_block(shapes, spec, 0) - saved_in_block(shapes, spec, 1) == spec.seq_len**2 * 2
    capped = _spec("gemma2", "bf16", 0)
    assert Shapes.of(config_for(capped), capped).attention == ("softcap", "softcap")


class _Head(nn.Module):
    """The final norm, the output projection, the final softcap and the loss."""

    def __init__(self, model: Any, targets: torch.Tensor) -> None:
        super().__init__()
        self.norm, self.output, self.targets, self.cap = model.norm, model.output, targets, model.cfg.final_softcap

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        logits = self.output(self.norm(x))
        return loss_fn(torch.tanh(logits / self.cap) * self.cap, self.targets)


@pytest.mark.parametrize(("dtype", "rank", "casts_params"), CASES)
def test_a_softcapped_head_is_counted_exactly(dtype: str, rank: int, casts_params: bool) -> None:
    spec = _spec("gemma2", dtype, rank)
    model, x = _model(spec, casts_params)
    targets = torch.randint(0, config_for(spec).vocab_size, (spec.batch_size, spec.seq_len))
    measured = _saved_bytes(_Head(model, targets), x, targets, autocast=dtype == "bf16" and not casts_params)
    assert measured == head_bytes(Shapes.of(config_for(spec), spec, casts_params=casts_params), spec).forward + 4
