"""Quantized frozen base weights (`--quant int8|nf4|nf4-torchao`): bitsandbytes layers (int8, nf4) or torchao's
NF4Tensor (quant_torchao.py) over a materialized model, then LoRA.  nf4 and nf4-torchao shard under FSDP2
(strategies/fsdp.py quantizes before `fully_shard`); int8 does not.  Generation also takes torchao's weight-only
int8/int4 (`int8-torchao`, `int4-torchao`: the projection's weight quantized in place, no adapters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from harness.core.torchao_choices import WEIGHT_ONLY
from harness.models.lora import _lora_config, freeze_base
from harness.models.materialize import canonical_name, init_value, is_adapter

if TYPE_CHECKING:
    from harness.core.spec import RunSpec


def quantize_and_adapt(model: nn.Module, spec: RunSpec, device: torch.device) -> nn.Module:
    """For a materialized model: replace every block projection with a bitsandbytes int8/NF4 layer holding
    the same (frozen) weights, then add LoRA adapters initialized like `materialize` would."""
    if spec.quant == "none":
        return model
    from peft import inject_adapter_in_model

    quantize_blocks(model, spec, device)
    model = inject_adapter_in_model(_lora_config(spec), model)
    freeze_base(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_adapter(name):
                param.data = init_value(canonical_name(name), param.shape, spec.seed, device).to(param.dtype)
    return model


def quantize_blocks(model: nn.Module, spec: RunSpec, device: torch.device) -> None:
    """Replace every block projection of a materialized model with a bitsandbytes int8/NF4 layer holding the
    same weights (generation uses them as they are; training adds adapters)."""
    for block in model.layers:  # type: ignore[union-attr]
        for name, child in list(block.named_modules()):
            if isinstance(child, nn.Linear):
                parent = block.get_submodule(name.rpartition(".")[0])
                setattr(parent, name.rpartition(".")[2], _quantized(child, spec, device))


def compute_dtype(spec: RunSpec) -> torch.dtype:
    """What a 4-bit weight dequantizes to: the 16-bit dtype under a 16-bit --dtype, else fp32.  bitsandbytes'
    packed NF4 weight is stored in it too (quant_storage), so FSDP2's mixed-precision cast of the gathered
    parameters (to that dtype) leaves the packed bits as they are, as the FSDP-QLoRA recipe sets it."""
    return {"bf16": torch.bfloat16, "bf16-pure": torch.bfloat16, "fp16": torch.float16}.get(spec.dtype,
                                                                                            torch.float32)


def _quantized(linear: nn.Linear, spec: RunSpec, device: torch.device) -> nn.Module:
    compute = compute_dtype(spec)
    if spec.quant in WEIGHT_ONLY:  # generation only
        from harness.models.quant_torchao import weight_only

        return weight_only(linear, spec.quant)
    if spec.quant == "nf4-torchao":
        from harness.models.quant_torchao import NF4Linear

        return NF4Linear(linear.to("cpu"), compute).to(device)
    import bitsandbytes as bnb

    layer: nn.Module
    if spec.quant == "int8":
        layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=False,
                                    has_fp16_weights=False, device="meta")
        layer.weight = bnb.nn.Int8Params(linear.weight.data.to("cpu"), requires_grad=False,
                                         has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False, quant_type="nf4",
                                  compute_dtype=compute, quant_storage=compute, device="meta")
        # the layer keeps the quant state too (module=): FSDP2 replaces the parameter, and the layer restores it
        layer.weight = bnb.nn.Params4bit(linear.weight.data.to("cpu"), requires_grad=False, quant_type="nf4",
                                         quant_storage=compute, module=layer)
    if linear.bias is not None:  # attention biases (Qwen2) stay as they are, frozen beside the quantized weight
        layer.bias = nn.Parameter(linear.bias.data.to("cpu"), requires_grad=False)
    return layer.to(device)  # quantizes on the move
