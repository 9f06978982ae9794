"""What the model-side knobs do to a zoo model: LoRA adapters (peft), quantized frozen base weights
(bitsandbytes) and activation checkpointing.

Order inside a strategy's `wrap`, as torchtitan does it: tensor parallel -> adapters -> activation
checkpointing -> FSDP/DDP -> materialize -> optimizer.  Adapters go on the meta model, so they are sharded
with it.  Quantized weights are the exception: bitsandbytes quantizes real values, so `quantize_and_adapt`
runs after `materialize` (single and ddp only: FSDP2 and DTensor cannot shard bitsandbytes' parameters).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch
from torch import nn

from harness.knobs import lora_modules

if TYPE_CHECKING:
    from harness.spec import RunSpec

# Wrappers that insert themselves into parameter names; stripped so values never depend on them.
_WRAPPER_PARTS = re.compile(r"(^|\.)(_checkpoint_wrapped_module|_fsdp_wrapped_module|_orig_mod|module|base_layer)"
                            r"(?=\.)")


def canonical_name(name: str) -> str:
    """A parameter's name without the wrappers' path parts: `layers.0._checkpoint_wrapped_module.attention.
    wq.base_layer.weight` -> `layers.0.attention.wq.weight`."""
    return _WRAPPER_PARTS.sub("", name).lstrip(".")


def is_adapter(name: str) -> bool:
    return ".lora_" in name


def param_dtype(spec: RunSpec) -> torch.dtype:
    """Storage dtype of the parameters: bf16 for pure bf16, else fp32 (mixed precision keeps fp32 masters)."""
    return torch.bfloat16 if spec.dtype == "bf16-pure" else torch.float32


def _lora_config(spec: RunSpec):  # type: ignore[no-untyped-def]
    from peft import LoraConfig

    return LoraConfig(r=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_dropout=0.0, bias="none",
                      target_modules=lora_modules(spec.lora_targets))


def freeze_base(model: nn.Module) -> None:
    """Only the adapters train."""
    for name, param in model.named_parameters():
        param.requires_grad_(is_adapter(name))


def add_adapters(model: nn.Module, spec: RunSpec) -> nn.Module:
    """LoRA on the meta model: adapters created on meta, base frozen.  No-op at --lora-rank 0, and with
    --quant, where `quantize_and_adapt` adds them after the base is quantized."""
    if not spec.lora_rank or spec.quant != "none":
        return model
    from peft import inject_adapter_in_model
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():  # the model is on meta: keep it there when simulate's fake mode is on
        model = inject_adapter_in_model(_lora_config(spec), model, low_cpu_mem_usage=True)
        model.to(param_dtype(spec))
    freeze_base(model)
    return model


def quantize_and_adapt(model: nn.Module, spec: RunSpec, device: torch.device) -> nn.Module:
    """For a materialized model: replace every block projection with a bitsandbytes int8/NF4 layer holding
    the same (frozen) weights, then add LoRA adapters initialized like `materialize` would."""
    if spec.quant == "none":
        return model
    from peft import inject_adapter_in_model

    from harness.zoo import init_value

    for block in model.layers:  # type: ignore[union-attr]
        for name, child in list(block.named_modules()):
            if isinstance(child, nn.Linear):
                parent = block.get_submodule(name.rpartition(".")[0])
                setattr(parent, name.rpartition(".")[2], _quantized(child, spec, device))
    model = inject_adapter_in_model(_lora_config(spec), model)
    freeze_base(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_adapter(name):
                param.data = init_value(canonical_name(name), param.shape, spec.seed, device).to(param.dtype)
    return model


def _quantized(linear: nn.Linear, spec: RunSpec, device: torch.device) -> nn.Module:
    import bitsandbytes as bnb

    compute = torch.bfloat16 if spec.dtype in ("bf16", "bf16-pure") else torch.float32
    layer: nn.Module
    if spec.quant == "int8":
        layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=False,
                                    has_fp16_weights=False, device="meta")
        layer.weight = bnb.nn.Int8Params(linear.weight.data.to("cpu"), requires_grad=False,
                                         has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False, quant_type="nf4",
                                  compute_dtype=compute, device="meta")
        layer.weight = bnb.nn.Params4bit(linear.weight.data.to("cpu"), requires_grad=False, quant_type="nf4")
    return layer.to(device)  # quantizes on the move


def apply_checkpointing(model: nn.Module, spec: RunSpec) -> None:
    """Wrap every block (`full`) or every --ckpt-every-th block (`selective`) so its activations are
    recomputed in backward instead of kept (non-reentrant torch.utils.checkpoint)."""
    if spec.activation_checkpointing == "off":
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    every = 1 if spec.activation_checkpointing == "full" else spec.ckpt_every
    layers: nn.ModuleList = model.layers  # type: ignore[assignment]
    for i, block in enumerate(layers):
        if i % every == 0:
            layers[i] = checkpoint_wrapper(block, preserve_rng_state=False)
