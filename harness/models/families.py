"""What a Hugging Face `config.json` says about its family beyond the Llama shape, read by its `model_type`: the
ModelConfig family fields (harness/models/zoo.py) each supported decoder family sets, with the defaults
`transformers` uses for a key the file leaves out.  Anything the model cannot build is refused."""

from __future__ import annotations

from typing import Any

from harness.core.errors import SpecError
from harness.core.limits import shown

# model_type -> family fields every config of it has, and defaults for keys a config.json may leave out
FAMILIES: dict[str, dict[str, Any]] = {
    "llama": {},
    "mistral": {},
    "qwen2": {"attention_bias": "qkv"},
    "qwen3": {"qk_norm": True},
    "gemma": {"mlp_act": "gelu_tanh", "embed_scale": True, "norm_offset": True},
    "gemma2": {"mlp_act": "gelu_tanh", "embed_scale": True, "norm_offset": True, "sandwich_norms": True},
    "phi3": {},
}
_DEFAULT_HEAD_DIM = {"qwen3": 128, "gemma": 256, "gemma2": 256}  # transformers' config classes
_TIED_BY_DEFAULT = ("gemma", "gemma2")
_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh"}
_WINDOWED = ("mistral", "phi3", "gemma2")  # families whose sliding_window key applies (Gemma 2: alternate layers)
_DEFAULT_WINDOW = {"mistral": 4096, "gemma2": 4096}


def family_values(model_type: str, data: dict[str, Any], where: str) -> dict[str, Any]:
    """The family fields of a config.json of `model_type` (one of FAMILIES); SpecError naming --model-config
    on a feature of the family the model does not build."""
    values: dict[str, Any] = {"family": model_type, **FAMILIES[model_type]}
    if data.get("tie_word_embeddings") is None and model_type in _TIED_BY_DEFAULT:
        values["tie_embeddings"] = True
    head = data.get("head_dim") if data.get("head_dim") is not None else _DEFAULT_HEAD_DIM.get(model_type)
    if head is not None:
        values["head_size"] = head
    if model_type in ("llama", "qwen3") and data.get("attention_bias"):
        values["attention_bias"] = "all"
    if data.get("mlp_bias"):
        raise SpecError("model_config", f"{where}: mlp_bias true is not built (the MLP has no biases)", "false")
    if model_type not in ("gemma", "gemma2"):
        values["mlp_act"] = _activation(data.get("hidden_act", "silu"), where)
    if model_type in ("qwen2", "qwen3") and data.get("use_sliding_window"):
        raise SpecError("model_config", f"{where}: use_sliding_window true is not built", "false")
    if model_type in _WINDOWED:  # a key the file leaves out takes transformers' default; null turns it off
        values["sliding_window"] = data.get("sliding_window", _DEFAULT_WINDOW.get(model_type)) or 0
        values["sliding_every"] = 2 if model_type == "gemma2" else 1
    if model_type == "gemma2":
        values["attn_softcap"] = data.get("attn_logit_softcapping", 50.0) or 0.0
        values["final_softcap"] = data.get("final_logit_softcapping", 30.0) or 0.0
    return values


def _activation(name: Any, where: str) -> str:
    if name not in _ACTIVATIONS:
        raise SpecError("model_config", f"{where}: hidden_act {shown(name)} is not built",
                        ", ".join(_ACTIVATIONS))
    return _ACTIVATIONS[name]
