"""`--offload disk` for generation: the loaded weights written to an offload folder and brought back module by
module at each forward, through accelerate's big-model inference (`disk_offload`: memory-mapped files, hooks that
load a module's weights onto the execution device before its forward and drop them after)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def offload_to_disk(model: nn.Module, folder: Path, device: torch.device) -> nn.Module:
    """Move a loaded model's weights to `folder` (created); what stays in memory: buffers (the RoPE table)."""
    from accelerate import disk_offload

    folder.mkdir(parents=True, exist_ok=True)
    return disk_offload(model, offload_dir=str(folder), execution_device=device, offload_buffers=False)
