"""`--quant nf4-torchao`: a block projection whose frozen weight is torchao's NF4Tensor (4-bit NormalFloat in
blocks of 64, one int8 scale per block and one scale per 256 of those), as torchtune's QLoRA holds it.  Unlike
bitsandbytes' Params4bit, an NF4Tensor defines FSDP2's all-gather hooks (fsdp_pre/post_all_gather) and the ops
sharding needs (split, view, copy_), so `fully_shard` shards it as it shards any parameter.

Its matmul (torchao's LinearNF4) keeps only the NF4 weight for backward and dequantizes it to the input's
dtype on each call, forward and backward: no input and no 16-bit weight copy is kept."""

from __future__ import annotations

import torch
from torch import nn


class NF4Linear(nn.Linear):
    """nn.Linear over a frozen NF4Tensor weight (peft adapts it as it adapts any nn.Linear)."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype) -> None:
        from torchao.quantization import to_nf4

        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(to_nf4(linear.weight.detach().to(dtype)), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import linear_nf4

        out = linear_nf4(x, self.weight)
        return out if self.bias is None else out + self.bias.to(out.dtype)


def weight_only(linear: nn.Linear, quant: str) -> nn.Linear:
    """`--quant int8-torchao|int4-torchao` (generation): the projection's weight replaced in place by torchao's
    weight-only Int8Tensor or int4 tinygemm tensor (harness/core/torchao_choices.py), quantized where it lies."""
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    config = (Int8WeightOnlyConfig(set_inductor_config=False) if quant == "int8-torchao" else
              Int4WeightOnlyConfig(int4_packing_format="tile_packed_to_4d", set_inductor_config=False))
    quantize_(linear, config)
    return linear
