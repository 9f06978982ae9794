"""The model cut into pipeline stages by blocks: the embedding with the first stage; the final norm and the
output projection with the last (the loss is the schedule's, on the last stage's logits).

A stage keeps the canonical parameter names (`layers.5.attention.wq.weight`), so `materialize` gives each
parameter the value it has in `single`, whichever stage holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.models.pipeline_split import stage_blocks, stages_of_rank

if TYPE_CHECKING:
    from harness.core.spec import RunSpec
    from harness.models.llama import Transformer


class Stage(nn.Module):
    """Blocks `blocks` of `model`, with the embedding if `first` and the norm and output projection if `last`."""

    def __init__(self, model: Transformer, blocks: range, first: bool, last: bool,
                 autocast: torch.dtype | None = None) -> None:
        super().__init__()
        self.cfg, self.max_seq_len = model.cfg, model.max_seq_len
        self.tok_embeddings = model.tok_embeddings if first else None
        self.layers = nn.ModuleDict({str(i): model.layers[i] for i in blocks})
        self.norm = model.norm if last else None
        self.output = model.output if last else None
        self.autocast = autocast
        self.register_buffer("rope", model.get_buffer("rope"), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = self.get_buffer("rope").device.type
        with torch.autocast(device, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            h = x
            if self.tok_embeddings is not None:
                h = self.tok_embeddings(x)
                if self.cfg.embed_scale:  # Gemma: by sqrt(dim)
                    h = h * self.cfg.dim**0.5
            for layer in self.layers.values():
                h = layer(h, self.get_buffer("rope"))
            if self.output is None or self.norm is None:
                return h
            logits = self.output(self.norm(h))
        if self.cfg.final_softcap > 0:
            logits = torch.tanh(logits / self.cfg.final_softcap) * self.cfg.final_softcap
        return logits


def checkpoint_blocks(stage: Stage, spec: RunSpec) -> None:
    """--activation-checkpointing on a stage's blocks, counted by their index in the whole model (as `single`
    counts them), so the same blocks are recomputed."""
    if spec.activation_checkpointing == "off":
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    every = 1 if spec.activation_checkpointing == "full" else spec.ckpt_every
    for key in list(stage.layers.keys()):
        if int(key) % every == 0:
            stage.layers[key] = checkpoint_wrapper(stage.layers[key], preserve_rng_state=False)


def split_model(model: nn.Module, pp: int, virtual: int, rank: int, style: str = "loop",
                autocast: torch.dtype | None = None) -> list[tuple[int, Stage]]:
    """This pipeline rank's stages of the meta `model`: (stage index, module) for each, in stage order."""
    total = pp * virtual
    transformer: Transformer = model  # type: ignore[assignment]
    blocks = stage_blocks(transformer.cfg.n_layers, total)
    return [(s, Stage(transformer, blocks[s], s == 0, s == total - 1, autocast))
            for s in sorted(stages_of_rank(rank, pp, virtual, style))]


def shard_stage(stage: Stage, mesh: Any, kwargs: dict[str, Any]) -> None:
    """FSDP2 within a stage: each block its own unit, then the stage (embedding, norm, output)."""
    from torch.distributed.fsdp import fully_shard

    for block in stage.layers.values():
        fully_shard(block, mesh=mesh, **kwargs)
    fully_shard(stage, mesh=mesh, **kwargs)
