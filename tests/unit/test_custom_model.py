"""Custom model shapes: Hugging Face config.json files of Llama-family models and --set overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.core.errors import SpecError
from harness.core.spec import RunSpec
from harness.models.hf_config import apply_sets, custom_config, from_hf_config
from harness.models.zoo import ZOO
from harness.run.validate import validate
from tests.helpers import SMALL, TINYLLAMA, write_config

LLAMA2_7B = {"_name_or_path": "meta-llama/Llama-2-7b-hf", "architectures": ["LlamaForCausalLM"],
             "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
             "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-05,
             "tie_word_embeddings": False, "vocab_size": 32000}
def test_llama2_config_has_the_exact_7b_parameter_count(tmp_path: Path) -> None:
    cfg = from_hf_config(write_config(tmp_path, LLAMA2_7B))
    assert cfg.name == "Llama-2-7b-hf"
    assert cfg.param_count() == 6_738_415_616 == ZOO["7b"].param_count()


def test_grouped_query_config_without_a_name(tmp_path: Path) -> None:
    cfg = from_hf_config(write_config(tmp_path, TINYLLAMA))
    assert (cfg.n_heads, cfg.n_kv_heads) == (32, 4)
    assert cfg.param_count() == 1_100_048_384  # TinyLlama-1.1B
    assert cfg.name == tmp_path.name  # the folder the config sits in, as a checkpoint folder would


@pytest.mark.parametrize(("data", "message"), [
    ({**TINYLLAMA, "model_type": "gpt2"}, "model_type 'gpt2' is not a supported decoder family; valid: llama, "
                                          "mistral, qwen2, qwen3, gemma, gemma2, phi3"),
    ({k: v for k, v in TINYLLAMA.items() if k != "hidden_size"}, "lacks hidden_size"),
    ({**TINYLLAMA, "num_key_value_heads": 5}, "do not split evenly"),
])
def test_bad_configs_are_refused_naming_the_flag(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match="^--model-config: ") as raised:
        from_hf_config(write_config(tmp_path, data))
    assert message in str(raised.value)


def test_set_overrides_by_either_name_and_records_them_in_the_name() -> None:
    cfg = apply_sets(ZOO["125m"], ["n_layers=2", "tie_word_embeddings=true"])
    assert (cfg.n_layers, cfg.tie_embeddings, cfg.name) == (2, True, "125m[n_layers=2,tie_embeddings=True]")
    with pytest.raises(SpecError, match="^--set: 'depth=2' is not key=value of a model field; valid: dim"):
        apply_sets(ZOO["125m"], ["depth=2"])
    with pytest.raises(SpecError, match="^--set: n_layers='two' is not a int"):
        apply_sets(ZOO["125m"], ["n_layers=two"])
    assert custom_config("125m", None, []) is None


def test_a_custom_spec_validates_and_its_name_must_match(tmp_path: Path) -> None:
    cfg = apply_sets(from_hf_config(write_config(tmp_path, TINYLLAMA)), SMALL)
    validate(RunSpec(model=cfg.name, model_config=cfg.to_json()))
    with pytest.raises(SpecError, match="^--model: 'tiny' is not the name of the custom model config"):
        validate(RunSpec(model="tiny", model_config=cfg.to_json()))
