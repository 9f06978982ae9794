"""Custom model shapes: a Hugging Face `config.json` of a Llama-family decoder (`--model-config FILE`) and
`--set key=value` overrides, turned into a ModelConfig carried in the RunSpec as JSON (`model_config`), so
the ranks never read the file.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from harness.core.errors import SpecError
from harness.models.zoo import ZOO, ModelConfig

LLAMA_FAMILY = ("llama", "mistral")
# Hugging Face key -> ModelConfig field
HF_KEYS = {"hidden_size": "dim", "intermediate_size": "ffn_dim", "num_hidden_layers": "n_layers",
           "num_attention_heads": "n_heads", "num_key_value_heads": "n_kv_heads", "vocab_size": "vocab_size",
           "tie_word_embeddings": "tie_embeddings", "rms_norm_eps": "norm_eps", "rope_theta": "rope_theta"}
_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
_SETTABLE = tuple(f.name for f in fields(ModelConfig) if f.name not in ("name", "measurable"))


def from_hf_config(path: Path) -> ModelConfig:
    """The ModelConfig of a Llama-family `config.json` (SpecError naming --model-config on anything else)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as why:
        raise SpecError("model_config", f"cannot read {path}: {why}") from None
    kind = data.get("model_type")
    if kind not in LLAMA_FAMILY:
        raise SpecError("model_config", f"{path}: model_type {kind!r} is not a Llama-family decoder",
                        ", ".join(LLAMA_FAMILY))
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise SpecError("model_config", f"{path} lacks {', '.join(missing)}", "a Hugging Face LlamaConfig")
    values = {field: data[key] for key, field in HF_KEYS.items() if data.get(key) is not None}
    values.setdefault("n_kv_heads", values["n_heads"])
    name = str(data.get("_name_or_path") or path.parent.name or path.stem).rstrip("/").split("/")[-1]
    return checked(ModelConfig(name=name, **values))


def apply_sets(cfg: ModelConfig, sets: list[str]) -> ModelConfig:
    """`key=value` overrides (ModelConfig fields or their Hugging Face names); the name records them."""
    changes: dict[str, Any] = {}
    for item in sets:
        key, sep, text = item.partition("=")
        key = HF_KEYS.get(key.strip(), key.strip())
        if not sep or key not in _SETTABLE:
            raise SpecError("set", f"{item!r} is not key=value of a model field",
                            ", ".join(_SETTABLE) + " (or their Hugging Face names)")
        kind = type(getattr(cfg, key))
        try:
            changes[key] = (text.lower() in ("1", "true", "yes")) if kind is bool else kind(text)
        except ValueError:
            raise SpecError("set", f"{key}={text!r} is not a {kind.__name__}") from None
    if not changes:
        return cfg
    label = ",".join(f"{k}={v}" for k, v in changes.items())
    return checked(replace(cfg, name=f"{cfg.name}[{label}]", measurable=True, **changes))


def checked(cfg: ModelConfig) -> ModelConfig:
    """Shape rules the model code needs."""
    for name in ("dim", "ffn_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            raise SpecError("model_config", f"{name} must be a positive integer, got {getattr(cfg, name)!r}")
    if cfg.dim % cfg.n_heads or cfg.n_heads % cfg.n_kv_heads or (cfg.dim // cfg.n_heads) % 2:
        raise SpecError("model_config", f"{cfg.name}: hidden size {cfg.dim}, {cfg.n_heads} heads and "
                        f"{cfg.n_kv_heads} kv heads do not split evenly (even head size needed for RoPE)")
    return cfg


def custom_config(model: str, config_file: Path | None, sets: list[str]) -> ModelConfig | None:
    """The custom ModelConfig the flags describe, or None when they name a plain zoo model."""
    if config_file is None and not sets:
        return None
    if config_file is not None:
        base = from_hf_config(config_file)
    elif model in ZOO:
        base = ZOO[model]
    else:
        raise SpecError("model", f"unknown model {model!r} to --set on", ", ".join(ZOO))
    return apply_sets(base, sets)
