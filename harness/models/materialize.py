"""Storage for a meta model, filled with values that depend only on the seed and each parameter's canonical
name (never on how the model is sharded), so every strategy starts from the same weights as `single`."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

import torch
from torch import nn

from harness.models.llama import rope_tables
from harness.models.zoo import ModelConfig

if TYPE_CHECKING:
    from harness.core.spec import RunSpec


def _param_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def init_value(name: str, shape: torch.Size, seed: int, device: torch.device) -> torch.Tensor:
    """The whole value of parameter `name` (its canonical name, see canonical_name).  LoRA starts as
    peft starts it: B = 0, so the adapted model equals the base; A random like the weights."""
    if ".lora_B." in name:
        return torch.zeros(shape, device=device)
    if name.endswith("norm.weight"):
        return torch.ones(shape, device=device)
    gen = torch.Generator(device=device).manual_seed(_param_seed(seed, name))
    return torch.randn(shape, generator=gen, device=device) * 0.02


def _fake() -> bool:
    """Under fake tensors (`spacetime simulate`) there are no values to fill: storage is all that exists."""
    from torch._guards import detect_fake_mode

    return detect_fake_mode() is not None


@torch.no_grad()
def materialize(model: nn.Module, device: torch.device, seed: int,
                buffer_device: torch.device | None = None) -> None:
    """Allocate storage for a meta (possibly sharded) model on `device` and fill it deterministically.

    Each parameter is generated whole from its own seed and then cut to this rank's shard, so the values
    are independent of the sharding (DTensor placements of FSDP2, TP or both).  `buffer_device` is where
    non-parameter buffers live when parameters are kept elsewhere (CPU offload).
    """
    from torch.distributed.tensor import DTensor, distribute_tensor


    model.to_empty(device=device)
    _tie_again(model)
    for name, param in model.named_parameters() if not _fake() else ():
        full = init_value(canonical_name(name), param.shape, seed, device)
        if isinstance(param, DTensor):
            shard = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
            param.to_local().copy_(shard.to_local())
        else:
            param.copy_(full)
    cfg: ModelConfig = model.cfg  # type: ignore[assignment]
    max_seq_len: int = model.max_seq_len  # type: ignore[assignment]
    model.rope = rope_tables(cfg.head_dim, max_seq_len, cfg.rope_theta, buffer_device or device)


def _tie_again(model: nn.Module) -> None:
    """`to_empty` gives each module a parameter of its own, so a tied output projection (1b, 3b, Gemma) would
    come back as a second copy of the embedding: tie it again, DTensor (TP) or not."""
    cfg = getattr(model, "cfg", None)
    output, embeddings = getattr(model, "output", None), getattr(model, "tok_embeddings", None)
    if cfg is not None and cfg.tie_embeddings and output is not None and embeddings is not None \
            and output.weight is not embeddings.weight:
        output.weight = embeddings.weight


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
