"""Custom model shapes: a Hugging Face `config.json` of a supported decoder family (`--model-config FILE`; the
families in harness/models/families.py) and `--set key=value` overrides, turned into a ModelConfig carried in
the RunSpec as JSON (`model_config`), so the ranks never read the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from harness.core.errors import SpecError
from harness.core.limits import check_int, shown
from harness.models.families import FAMILIES, family_values
from harness.models.zoo import ZOO, ModelConfig

# Hugging Face key -> ModelConfig field
HF_KEYS = {"hidden_size": "dim", "intermediate_size": "ffn_dim", "num_hidden_layers": "n_layers",
           "num_attention_heads": "n_heads", "num_key_value_heads": "n_kv_heads", "vocab_size": "vocab_size",
           "tie_word_embeddings": "tie_embeddings", "rms_norm_eps": "norm_eps", "rope_theta": "rope_theta",
           "head_dim": "head_size"}
_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
_SETTABLE = tuple(f.name for f in fields(ModelConfig) if f.name not in ("name", "measurable", "family"))
_HF_NAMES = {field: key for key, field in HF_KEYS.items()}
_SHAPE = ("dim", "ffn_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size")
_CHOICES = {"attention_bias": ("none", "qkv", "all"), "mlp_act": ("silu", "gelu_tanh"), "family": tuple(FAMILIES)}
_FLAGS = ("tie_embeddings", "qk_norm", "embed_scale", "norm_offset", "sandwich_norms")
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few KB; anything past 1 MiB is not one
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise SpecError("model_config", f"{shown(str(path))} is larger than {MAX_CONFIG_BYTES} bytes",
                            "a Hugging Face config.json")
        return json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as why:  # ValueError: not UTF-8, not JSON, a too-long number
        reason = why.strerror if isinstance(why, OSError) and why.strerror else f"{type(why).__name__}: {why}"
        raise SpecError("model_config", f"cannot read {shown(str(path))}: {_printable(reason)[:160]}",
                        "a UTF-8 JSON object (a Hugging Face config.json)") from None


def from_hf_config(path: Path) -> ModelConfig:
    """The ModelConfig of a `config.json` of a supported family (SpecError naming --model-config on anything
    else)."""
    data = _read_json(path)
    if not isinstance(data, dict):
        kind = _JSON_KINDS.get(type(data), type(data).__name__)
        raise SpecError("model_config", f"{shown(str(path))} holds a JSON {kind}, not an object",
                        "a Hugging Face config.json")
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:  # a list or object is no family either
        raise SpecError("model_config", f"{shown(str(path))}: model_type {shown(model_type)} is not a supported "
                        "decoder family", ", ".join(FAMILIES))
    missing = [k for k in _REQUIRED if data.get(k) is None]
    if missing:
        raise SpecError("model_config", f"{shown(str(path))} lacks {', '.join(missing)}",
                        "a Hugging Face LlamaConfig")
    values = {field: data[key] for key, field in HF_KEYS.items() if data.get(key) is not None}
    values.setdefault("n_kv_heads", values["n_heads"])
    values = {**family_values(model_type, data, shown(str(path))), **values}
    if values.get("head_size") is not None and values["head_size"] == _even_split(values):
        values["head_size"] = 0  # the width dim / heads gives: left implicit, as the zoo's Llama shapes do
    name = str(data.get("_name_or_path") or path.parent.name or path.stem).rstrip("/").split("/")[-1]
    return checked(ModelConfig(name=_printable(name) or path.stem, **values), "model_config")


def _even_split(values: dict[str, Any]) -> int | None:
    dim, heads = values.get("dim"), values.get("n_heads")
    if isinstance(dim, int) and isinstance(heads, int) and heads > 0 and dim % heads == 0:
        return dim // heads
    return None


def _printable(name: str) -> str:
    """The name with characters a one-line message or a table cannot show replaced by `?`."""
    return "".join(c if c.isprintable() else "?" for c in name)


def apply_sets(cfg: ModelConfig, sets: list[str]) -> ModelConfig:
    """`key=value` overrides (ModelConfig fields or their Hugging Face names); the name records them."""
    changes: dict[str, Any] = {}
    for item in sets:
        key, sep, text = item.partition("=")
        key = HF_KEYS.get(key.strip(), key.strip())
        if not sep or key not in _SETTABLE:
            raise SpecError("set", f"{shown(item)} is not key=value of a model field",
                            ", ".join(_SETTABLE) + " (or their Hugging Face names)")
        changes[key] = _parse_value(key, type(getattr(cfg, key)), text)
    if not changes:
        return cfg
    label = ",".join(f"{k}={v}" for k, v in changes.items())
    return checked(replace(cfg, name=f"{cfg.name}[{label}]", measurable=True, **changes), "set")


def _parse_value(key: str, kind: type, text: str) -> Any:
    if kind is bool:
        if text.strip().lower() not in _BOOLS:
            raise SpecError("set", f"{key}={shown(text)} is not a bool", "true, false (or 1, 0, yes, no)")
        return _BOOLS[text.strip().lower()]
    try:
        return kind(text)
    except ValueError:
        raise SpecError("set", f"{key}={shown(text)} is not a {kind.__name__}") from None


def _label(field: str) -> str:
    """A shape field with its Hugging Face key, as a message names it: `n_layers (num_hidden_layers)`."""
    key = _HF_NAMES.get(field, field)
    return field if key == field else f"{field} ({key})"


def checked(cfg: ModelConfig, flag: str = "model_config") -> ModelConfig:
    """Shape rules the model code needs; SpecError naming `flag` (--model-config, or --set for overrides)."""
    for name in (*_SHAPE, "head_size", "sliding_window", "sliding_every"):
        check_int(name, getattr(cfg, name), flag, _label(name))
    for name in _FLAGS:
        if not isinstance(getattr(cfg, name), bool):
            raise SpecError(flag, f"{_label(name)} must be true or false, got {shown(getattr(cfg, name))}",
                            "true, false")
    for name, valid in _CHOICES.items():
        if getattr(cfg, name) not in valid:
            raise SpecError(flag, f"{name} must be one of the valid values, got {shown(getattr(cfg, name))}",
                            ", ".join(valid))
    for name in ("norm_eps", "rope_theta", "attn_softcap", "final_softcap"):
        value = getattr(cfg, name)
        low = name.endswith("softcap")  # a softcap of 0 is off
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                or value < 0 or (value == 0 and not low):
            raise SpecError(flag, f"{_label(name)} must be a finite number {'>= 0' if low else '> 0'}, "
                            f"got {shown(value)}")
    if not isinstance(cfg.name, str) or not cfg.name:
        raise SpecError(flag, f"the model's name must be a non-empty string, got {shown(cfg.name)}")
    if (not cfg.head_size and cfg.dim % cfg.n_heads) or cfg.n_heads % cfg.n_kv_heads or cfg.head_dim % 2:
        raise SpecError(flag, f"{cfg.name}: hidden size {cfg.dim}, {cfg.n_heads} heads and "
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
        raise SpecError("model", f"unknown model {shown(model)} to --set on", ", ".join(ZOO))
    return apply_sets(base, sets)
