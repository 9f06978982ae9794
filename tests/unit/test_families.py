"""The decoder families `--model-config` reads (Llama, Mistral, Qwen2.5, Qwen3, Gemma, Gemma 2, Phi-3): each
official config.json (tests/data/configs) counts the parameters `transformers` builds for it, the zoo's shape
of each family is that config's, and a shrunken model of each family trains."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.core.errors import SpecError
from harness.models.attend import attend, explicit_attention
from harness.models.hf_config import apply_sets, from_hf_config
from harness.models.llama import build_model
from harness.models.materialize import materialize
from harness.models.zoo import ZOO
from tests.helpers import TINYLLAMA, write_config

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
ZOO_NAME = {"Llama-3.1-8B": "8b", "Mistral-7B-v0.3": "mistral-7b", "Qwen2.5-7B": "qwen2.5-7b",
            "Qwen3-8B": "qwen3-8b", "gemma-7b": "gemma-7b", "gemma-2-9b": "gemma2-9b",
            "Phi-3-mini-4k-instruct": "phi3-mini"}
# a few layers of a few heads; a head width apart from dim / heads, and windows shorter than the sequence
SHRINK = ["n_layers=2", "dim=64", "n_heads=4", "n_kv_heads=2", "ffn_dim=96", "vocab_size=128", "head_dim=24",
          "sliding_window=5"]


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a tied weight is one parameter


@pytest.mark.parametrize("name", ZOO_NAME)
def test_the_parameter_count_is_what_transformers_builds(name: str) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        reference = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(CONFIGS / name))
    cfg = from_hf_config(CONFIGS / name / "config.json")
    assert cfg.name == name
    assert cfg.param_count() == _count(reference) == _count(build_model(cfg, 16))


@pytest.mark.parametrize("name", ZOO_NAME)
def test_the_zoo_holds_each_familys_shape(name: str) -> None:
    zoo = ZOO[ZOO_NAME[name]]
    assert replace(from_hf_config(CONFIGS / name / "config.json"), name=zoo.name) == zoo


def test_a_llama_shape_reads_and_records_as_before(tmp_path: Path) -> None:
    cfg = from_hf_config(write_config(tmp_path, {**TINYLLAMA, "head_dim": 64}))
    assert cfg.head_size == 0 and cfg.family == "llama"
    assert "family" not in cfg.to_json() and "head_size" not in cfg.to_json()


@pytest.mark.parametrize(("change", "message"), [
    ({"model_type": "gpt2"}, "model_type 'gpt2' is not a supported decoder family; valid: llama, mistral, qwen2, "
                             "qwen3, gemma, gemma2, phi3"),
    ({"hidden_act": "relu"}, "hidden_act 'relu' is not built; valid: silu, swish, gelu_pytorch_tanh"),
    ({"mlp_bias": True}, "mlp_bias true is not built"),
    ({"head_dim": 63}, "do not split evenly"),
    ({"model_type": "qwen2", "use_sliding_window": True}, "use_sliding_window true is not built"),
])
def test_what_the_model_cannot_build_is_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match="^--model-config: ") as raised:
        from_hf_config(write_config(tmp_path, {**TINYLLAMA, **change}))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_family_fields_set_by_name_are_checked() -> None:
    assert apply_sets(ZOO["tiny"], ["attention_bias=qkv"]).param_count() > ZOO["tiny"].param_count()
    with pytest.raises(SpecError, match="^--set: attention_bias must be one of the valid values, got 'q'; "
                                        "valid: none, qkv, all$"):
        apply_sets(ZOO["tiny"], ["attention_bias=q"])
    with pytest.raises(SpecError, match="^--set: attn_softcap must be a finite number >= 0, got -1.0$"):
        apply_sets(ZOO["tiny"], ["attn_softcap=-1"])


@pytest.mark.parametrize("name", ZOO_NAME)
def test_a_shrunken_model_of_each_family_trains(name: str) -> None:
    cfg = apply_sets(from_hf_config(CONFIGS / name / "config.json"), SHRINK)
    model = build_model(cfg, 16)
    assert _count(model) == cfg.param_count()
    materialize(model, torch.device("cpu"), seed=0)
    tokens = torch.randint(0, cfg.vocab_size, (2, 16))
    logits = model(tokens)
    assert logits.shape == (2, 16, cfg.vocab_size) and torch.isfinite(logits).all()
    if cfg.final_softcap:
        assert logits.abs().max() < cfg.final_softcap
    F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_the_written_out_attention_is_sdpas_without_a_cap() -> None:
    # float32, as the model runs it: the written-out path takes its softmax in float32 whatever the input, so
    # float64 inputs would compare float32 rounding against float64's
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 12, 8, generator=generator) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(explicit_attention(q, k, v, 0.0, 0), expected)
    torch.testing.assert_close(explicit_attention(q, k, v, 0.0, 12), expected)  # a window as long as the keys
    window = torch.ones(12, 12, dtype=torch.bool).tril() & ~torch.ones(12, 12, dtype=torch.bool).tril(-3)
    torch.testing.assert_close(explicit_attention(q, k, v, 0.0, 3),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=window))
    torch.testing.assert_close(attend(q, k, v, 0.0, 3), explicit_attention(q, k, v, 0.0, 3))
    capped = explicit_attention(q, k, v, 0.5, 3)  # a cap this low moves the weights
    assert not torch.allclose(capped, explicit_attention(q, k, v, 0.0, 3))
    torch.testing.assert_close(attend(q, k, v, 0.5, 3), capped)


def test_a_tied_output_stays_tied_once_materialized() -> None:
    cfg = apply_sets(ZOO["gemma-7b"], SHRINK)
    model = build_model(cfg, 16)
    materialize(model, torch.device("cpu"), seed=0)
    assert model.output.weight is model.tok_embeddings.weight
    assert _count(model) == cfg.param_count()


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_a_quantized_base_keeps_its_attention_biases(quant: str) -> None:
    from harness.core.spec import RunSpec
    from harness.models.quantize import quantize_and_adapt

    cfg = apply_sets(ZOO["qwen2.5-7b"], SHRINK)
    spec = RunSpec(model=cfg.name, model_config=cfg.to_json(), quant=quant, lora_rank=8, seq_len=16)
    model = build_model(cfg, 16)
    materialize(model, torch.device("cpu"), seed=0)
    bias = model.layers[0].attention.wq.bias.detach().clone()
    model = quantize_and_adapt(model, spec, torch.device("cpu"))
    kept = model.layers[0].attention.wq.base_layer.bias
    assert torch.equal(kept.detach(), bias) and not kept.requires_grad


def test_estimate_reports_the_count_of_the_shape_it_read(tmp_path: Path) -> None:
    """`estimate --json` gives `params`, so a user can check the config.json was read as meant; no torch."""
    import json

    from tests.unit.test_light_commands import light

    config = CONFIGS / "gemma-2-9b" / "config.json"
    code, out = light("estimate", "--model-config", str(config), "--json")
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["params"] == from_hf_config(config).param_count()
    code, out = light("estimate", "--model-config", str(write_config(tmp_path, {**TINYLLAMA, "model_type": "gpt2"})),
                      "--json")
    assert code == 2 and out == ""  # refused before any figure
