"""`--compile`: torch.compile (Inductor) of each transformer block (`blocks`, torchtitan's regional compilation)
or of the whole model (`model`).

Strategies call `compile_blocks` where torchtitan does: after activation checkpointing (and tensor parallelism),
before the data-parallel wrapper (`fully_shard`, DDP), so the wrapper's hooks stay outside the compiled code.
Each block is replaced by its compiled module; its parameters keep their names apart from `_orig_mod`, which
materialize's canonical names strip.  Blocks share their code, so one compilation serves them all.

Compilation happens in the first step the model runs, a warmup step: neither the memory probe nor the timed
steps see it, and the run's --timeout covers it like any other step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from harness.core.spec import RunSpec


def fullgraph(spec: RunSpec) -> bool:
    """One graph per compiled region, an error on any break.  bitsandbytes' quantized matmuls break the graph
    (their kernels are opaque to dynamo), so a quantized base compiles in pieces."""
    return spec.quant == "none"


def compile_blocks(model: nn.Module, spec: RunSpec) -> None:
    """--compile blocks: each transformer block (checkpoint wrapper included) replaced by its compiled module."""
    if spec.compile != "blocks":
        return
    layers: nn.ModuleList = model.layers  # type: ignore[assignment]
    for i, block in enumerate(layers):
        layers[i] = torch.compile(block, fullgraph=fullgraph(spec))  # type: ignore[assignment]


def compile_model(model: nn.Module, spec: RunSpec, whole_graph: bool = True) -> nn.Module:
    """--compile model: the whole model compiled (blocks: compile_blocks); other values return `model`.
    `whole_graph=False` where the model holds hooks dynamo runs outside its graph (FSDP2's, per block)."""
    if spec.compile != "model":
        return model
    compiled: nn.Module = torch.compile(model, fullgraph=whole_graph and fullgraph(spec))  # type: ignore[assignment]
    return compiled


def apply_compile(model: nn.Module, spec: RunSpec) -> nn.Module:
    """Both: the model to wrap next (or to train, for `single`)."""
    compile_blocks(model, spec)
    return compile_model(model, spec)
