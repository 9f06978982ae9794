"""The generate workload on one rank (`harness/run/worker.py` dispatches here on `spec.workload`): the strategy
loads the model for inference, then load, memory and timing figures (harness/train/generate_measure.py).

Prompts are one global batch from the seed (batch x data-parallel degree rows); each data-parallel rank takes
its rows, so rank 0 generates for the same prompts under every strategy as under `single`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.core.progress import rank_phase
from harness.core.spec import RunSpec
from harness.models.generate import prompts
from harness.models.llama import build_model
from harness.models.offload import offload_to_disk
from harness.models.zoo import config_for
from harness.run.nodes import NODE_RANK_ENV
from harness.run.processes import RUN_DIR_ENV
from harness.train.generate_measure import AllocCounter, generate_dtype, measure_generation
from harness.train.world import World
from strategies import Layout, get_strategy


def rank_prompts(spec: RunSpec, layout: Layout, world: World) -> torch.Tensor:
    """This rank's (batch_size, prompt_len) prompts: its rows of the global batch (tp ranks of one data-parallel
    group share rows)."""
    vocab = config_for(spec).vocab_size
    every = prompts(spec.seed, spec.batch_size * layout.dp, spec.prompt_len, vocab)
    dp_rank = world.rank // layout.tp
    return every[dp_rank * spec.batch_size:(dp_rank + 1) * spec.batch_size].to(world.device)


def local_bytes(model: nn.Module) -> int:
    """Bytes of this rank's parameter storage (a DTensor's local shard, a ZeRO-3 partition; none for weights
    offloaded to disk)."""
    from torch.distributed.tensor import DTensor

    locals_ = (p.to_local() if isinstance(p, DTensor) else getattr(p, "ds_tensor", p) for p in model.parameters())
    return sum(t.numel() * t.element_size() for t in locals_ if t.device.type != "meta")


def offload_folder(world: World) -> Path:
    """Where --offload disk writes the weights: under the run's temporary folder (removed with it)."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    base = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="spacetime-offload-"))
    return base / f"offload-rank{world.rank}"


def _device_used(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    try:
        return int(torch.cuda.device_memory_used(device))
    except Exception:  # no NVML: total minus free as the driver sees it
        free, total = torch.cuda.mem_get_info(device)
        return int(total - free)


def run_generate(spec: RunSpec, world: World) -> dict[str, Any]:
    strategy = get_strategy(spec.strategy)
    layout = strategy.layout(spec)
    cfg = config_for(spec)
    counter = AllocCounter(world.device)
    counter.install()
    _phase(f"model: load {spec.model} for generation ({spec.strategy}, {spec.dtype})")
    meta = build_model(cfg, spec.prompt_len + spec.new_tokens).to(generate_dtype(spec))
    model = strategy.wrap_generate(meta, world, spec)
    if spec.offload == "disk":  # single only (harness/run/workload_checks.py): whole modules move, not shards
        model = offload_to_disk(model, offload_folder(world), world.device)
    prompt = rank_prompts(spec, layout, world)
    _phase(f"generate: {spec.batch_size} x ({spec.prompt_len} + {spec.new_tokens}) tokens, "
           f"{spec.num_beams} beam(s), {spec.kv_cache} cache")
    figures = measure_generation(model, prompt, spec, cfg.n_kv_heads // layout.tp, counter)
    return {"rank": world.rank, **figures, "device_used_bytes": _device_used(world.device),
            "param_bytes": local_bytes(model)}


def _phase(text: str) -> None:
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get(NODE_RANK_ENV, "0") == "0":
        rank_phase(text)
