"""LoRA adapters (`--lora-rank`, peft) on a zoo model, its base frozen.

Order inside a strategy's `wrap`, as torchtitan does it: tensor parallel -> adapters -> activation
checkpointing -> FSDP/DDP -> materialize -> optimizer.  Adapters go on the meta model, so they are sharded
with it.  Quantized weights are the exception: bitsandbytes quantizes real values, so quantize.py's
`quantize_and_adapt` runs after `materialize` (single and ddp only: FSDP2 and DTensor cannot shard
bitsandbytes' parameters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from harness.core.knobs import lora_modules
from harness.models.materialize import is_adapter, param_dtype

if TYPE_CHECKING:
    from harness.core.spec import RunSpec


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
