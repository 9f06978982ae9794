"""The zoo model of each family computes what `transformers` computes: the official config.json shrunk, our
model materialized with random weights, the same weights copied into transformers' model (eager attention),
the logits compared.  Our RoPE rotates consecutive pairs and transformers' the two halves of each head, so q
and k rows (and their biases and per-head norms) are permuted on the way; Phi-3's fused projections are the
concatenation of ours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.models.hf_config import from_hf_config
from harness.models.llama import build_model
from harness.models.materialize import materialize
from tests.helpers import write_config
from tests.unit.test_families import CONFIGS, ZOO_NAME

SHRINK = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
          "intermediate_size": 96, "vocab_size": 128, "head_dim": 24, "rope_scaling": None, "pad_token_id": 0}
WINDOWED = {"mistral": 5, "phi3": 5, "gemma2": 5}  # families whose config.json window transformers applies


def _halves(rows: int, head: int) -> torch.Tensor:
    """Row order that turns our consecutive-pair rotary layout into transformers' half-split one."""
    one = torch.cat([torch.arange(0, head, 2), torch.arange(1, head, 2)])
    return torch.cat([one + h * head for h in range(rows // head)])


def _ours_to_hf(ours: dict[str, torch.Tensor], family: str, head: int) -> dict[str, torch.Tensor]:
    tied = ours.get("output.weight", ours["tok_embeddings.weight"])  # tied: one parameter
    out: dict[str, torch.Tensor] = {"model.embed_tokens.weight": ours["tok_embeddings.weight"],
                                    "model.norm.weight": ours["norm.weight"], "lm_head.weight": tied}
    ffn_norm = "pre_feedforward_layernorm" if family == "gemma2" else "post_attention_layernorm"
    names = {"attention_norm": "input_layernorm", "ffn_norm": ffn_norm,
             "post_attention_norm": "post_attention_layernorm", "post_ffn_norm": "post_feedforward_layernorm",
             "attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj",
             "attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.o_proj",
             "attention.q_norm": "self_attn.q_norm", "attention.k_norm": "self_attn.k_norm",
             "feed_forward.w1": "mlp.gate_proj", "feed_forward.w3": "mlp.up_proj", "feed_forward.w2": "mlp.down_proj"}
    for name, value in ours.items():
        if not name.startswith("layers."):
            continue
        _, i, rest = name.split(".", 2)
        module, kind = rest.rsplit(".", 1)
        if module in ("attention.wq", "attention.wk", "attention.q_norm", "attention.k_norm"):
            value = value[_halves(value.shape[0], head)]
        out[f"model.layers.{i}.{names[module]}.{kind}"] = value
    if family == "phi3":
        for i in {k.split(".")[2] for k in out if k.startswith("model.layers.")}:
            p = f"model.layers.{i}."
            parts = [out.pop(p + f"self_attn.{n}_proj.weight") for n in "qkv"]
            out[p + "self_attn.qkv_proj.weight"] = torch.cat(parts)
            gate, up = out.pop(p + "mlp.gate_proj.weight"), out.pop(p + "mlp.up_proj.weight")
            out[p + "mlp.gate_up_proj.weight"] = torch.cat([gate, up])
    return out


@pytest.mark.parametrize("name", ZOO_NAME)
def test_the_logits_are_transformers(name: str, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    data: dict[str, Any] = {**json.loads((CONFIGS / name / "config.json").read_text()), **SHRINK}
    data.pop("torch_dtype", None)
    family = data["model_type"]
    data["sliding_window"] = WINDOWED.get(family, data.get("sliding_window"))
    if family == "gemma2":
        data["query_pre_attn_scalar"] = data["head_dim"]
    cfg = from_hf_config(write_config(tmp_path, data))
    model = build_model(cfg, 16)
    materialize(model, torch.device("cpu"), seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():  # norms and biases away from 1 and 0, so a misplaced one shows
            param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    reference = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tmp_path), attn_implementation="eager",
                                                 dtype=torch.float32)
    weights = _ours_to_hf(dict(model.named_parameters()), family, cfg.head_dim)
    assert set(weights) | {"lm_head.weight"} == {n for n, _ in reference.named_parameters()} | {"lm_head.weight"}
    reference.load_state_dict(weights, strict=False)
    tokens = torch.randint(0, cfg.vocab_size, (2, 16), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference(tokens).logits, rtol=1e-4, atol=1e-4)
