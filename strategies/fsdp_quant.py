"""QLoRA under FSDP2: the frozen base quantized on each rank from the materialized model, adapters added, then
`fully_shard` shards the 4-bit weights as it shards any parameter.

  nf4          bitsandbytes' Params4bit, its packed bytes stored in the dtype FSDP2 gathers in (quant_storage,
               as the FSDP-QLoRA recipe sets it), so the mixed-precision cast leaves them as they are; the
               layer keeps the quant state (scales, unsharded) and restores it on the gathered parameter.
  nf4-torchao  torchao's NF4Tensor, whose FSDP2 hooks gather the packed data and its scales (torchtune's QLoRA).
  int8         refused (QUANT_LIMITS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.errors import Unsupported

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.core.spec import RunSpec

QUANT_LIMITS = {
    "quant=int8": "bitsandbytes' Linear8bitLt reads its int8 weight's scales from the parameter object "
                  "(weight.CB, weight.SCB), which FSDP2 replaces with a plain gathered tensor ('Parameter' object has "
                  "no attribute 'CB'), and unlike Linear4bit it cannot restore them; use single or ddp, or --quant "
                  "nf4 / nf4-torchao",
}


def check_quant(name: str, spec: RunSpec) -> None:
    """Quantized generation loads its weights after sharding (models/generate.py), which a 4-bit base cannot;
    torchao's NF4Tensor does not gather under hybrid sharding (measured with torch 2.13, torchao 0.18)."""
    if spec.quant == "nf4-torchao" and name == "fsdp_hybrid_shard":
        raise Unsupported(f"{name} with --quant nf4-torchao: under hybrid sharding FSDP2 hands torchao's "
                          "NF4Tensor.fsdp_post_all_gather one all-gather output where it unpacks three (scales, "
                          "factor, data): ValueError; use fsdp_full_shard, or --quant nf4")
    if spec.quant != "none" and spec.workload == "generate":
        raise Unsupported(f"{name} with --quant {spec.quant} --workload generate: the weights are quantized after "
                          "sharding, which the quantized layers cannot take; use single or ddp")


def quantized_base(model: nn.Module, param_device: torch.device, device: torch.device, spec: RunSpec) -> nn.Module:
    """The meta model materialized whole on this rank, its block projections quantized and LoRA added (as
    single does it, so the same seed gives the same weights), ready to shard."""
    from harness.models.materialize import materialize
    from harness.models.quantize import quantize_and_adapt

    materialize(model, param_device, spec.seed, buffer_device=device)
    return quantize_and_adapt(model, spec, param_device)
