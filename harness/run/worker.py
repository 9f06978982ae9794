"""The per-rank entry point under torchrun: `python -m harness.run.worker --spec JSON --out FILE`.

warmup steps -> memory steps (probed) -> timed steps; per-rank figures are gathered to rank 0, which
writes the result as JSON to --out.  Every strategy sees the same global data for step i.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from harness.core.errors import Unsupported
from harness.core.progress import rank_phase as _phase  # the host's first rank only
from harness.core.spec import RunSpec
from harness.models.llama import build_model
from harness.models.materialize import param_dtype
from harness.models.zoo import config_for
from harness.run.generate_worker import run_generate
from harness.run.nodes import NODE_RANK_ENV
from harness.run.processes import watch_launcher
from harness.train.measure import device_name, memory_probe, reset_rss_peak, rss_peak_bytes, synchronize, time_steps
from harness.train.optimizer import make_optimizer_factory
from harness.train.world import World, close_world, init_world
from strategies import Batch, Layout, get_strategy


def global_batch(spec: RunSpec, layout: Layout, step: int) -> torch.Tensor:
    """Tokens (global_batch, seq_len + 1) for step `step`; depends only on seed, step and global size."""
    vocab = config_for(spec).vocab_size
    gen = torch.Generator().manual_seed(spec.seed * 1_000_003 + step)
    rows = spec.batch_size * spec.grad_accum * layout.dp
    return torch.randint(0, vocab, (rows, spec.seq_len + 1), generator=gen)


def local_batches(spec: RunSpec, layout: Layout, world: World) -> list[Batch]:
    """This rank's rows of every step's global batch (tp ranks of one dp group share rows)."""
    dp_rank = (world.rank // (layout.tp * layout.cp)) % layout.dp  # pipeline ranks (outermost) share rows too,
    # and context-parallel ones (between dp and tp) share them too, each taking its part of the sequences
    per_rank = spec.batch_size * spec.grad_accum  # the step splits it into grad_accum micro-batches
    rows = slice(dp_rank * per_rank, (dp_rank + 1) * per_rank)
    out = []
    for step in range(spec.warmup + spec.memory_steps + spec.steps):
        tokens = global_batch(spec, layout, step)[rows].to(world.device)
        out.append((tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()))
    return out


def param_digest(model: nn.Module) -> tuple[int, float]:
    """Bytes of this rank's parameter storage and a float64 sum of squares of its local values."""
    from torch.distributed.tensor import DTensor

    nbytes, digest = 0, 0.0
    for p in model.parameters():
        local = p.to_local() if isinstance(p, DTensor) else getattr(p, "ds_tensor", p)  # ZeRO-3: the partition
        nbytes += local.numel() * local.element_size()
        digest += float(local.detach().double().pow(2).sum())
    return nbytes, digest


def _qualname(obj: object) -> str | None:
    return None if obj is None else f"{type(obj).__module__}.{type(obj).__qualname__}"


def run_rank(spec: RunSpec, world: World) -> dict[str, Any]:
    strategy = get_strategy(spec.strategy)
    layout = strategy.layout(spec)
    batches = local_batches(spec, layout, world)
    probe = memory_probe(world.device)
    probe.start()
    _phase(f"model: build {spec.model} and wrap it ({spec.strategy})")
    model = build_model(config_for(spec), spec.seq_len).to(param_dtype(spec))
    prepared = strategy.wrap(model, make_optimizer_factory(spec), world, spec)
    for i, batch in enumerate(batches[: spec.warmup]):
        _phase(f"warmup: step {i + 1}/{spec.warmup}")
        prepared.step(batch)
    synchronize(world.device)
    reset_rss_peak()
    timed = spec.warmup + spec.memory_steps
    for i, batch in enumerate(batches[spec.warmup: timed]):
        _phase(f"memory: step {i + 1}/{spec.memory_steps}")
        with probe.window():
            prepared.step(batch)
    memory = probe.stop()
    durations: list[float] = []
    loss: torch.Tensor | None = None
    for i, batch in enumerate(batches[timed:]):  # one at a time, each timed alone, the phase line outside it
        _phase(f"timed: step {i + 1}/{spec.steps}")
        took, loss = time_steps(prepared.step, [batch], world.device)
        durations += took
    assert loss is not None
    mean_loss = loss.detach().float().clone()
    dist.all_reduce(mean_loss)  # tp ranks hold equal copies, so the world mean is the dp mean
    nbytes, digest = param_digest(prepared.model)
    return {"rank": world.rank, **memory, "rss_peak_bytes": rss_peak_bytes(), "step_s": durations,
            "param_bytes": nbytes, "param_digest": digest,
            "trainable_params": sum(getattr(p, "ds_numel", p.numel())  # ZeRO-3 params are empty between uses
                                    for p in prepared.model.parameters() if p.requires_grad),
            "optimizer_class": _qualname(prepared.optimizer), **(prepared.figures() if prepared.figures else {}),
            "loss": float(mean_loss) / world.world_size}


def _writes_result(world: World) -> bool:
    """The first rank on node 0, where the launcher that keeps the record waits (the c10d rendezvous may
    give global rank 0 to a process on another host)."""
    return world.local_rank == 0 and os.environ.get(NODE_RANK_ENV, "0") == "0"


def main(argv: list[str] | None = None) -> int:
    watch_launcher()  # no rank outlives its launcher or torchrun (harness/run/processes.py)
    parser = argparse.ArgumentParser(prog="harness.run.worker")
    parser.add_argument("--spec", required=True, help="RunSpec as JSON")
    parser.add_argument("--out", required=True, help="rank 0 writes the result JSON here")
    args = parser.parse_args(argv)
    spec = RunSpec.from_json(args.spec)
    torch.manual_seed(spec.seed)
    _phase(f"rendezvous: process group of {spec.nproc} rank(s)")
    world = init_world(spec.device)
    try:
        try:
            mine = (run_generate if spec.workload == "generate" else run_rank)(spec, world)
        except Unsupported as why:  # found only at run time (every rank finds it): a result, not a crash
            if _writes_result(world):
                Path(args.out).write_text(json.dumps({"unsupported": str(why)}))
            return 0
        _phase("gather: every rank's figures to rank 0")
        ranks: list[Any] = [None] * world.world_size
        dist.all_gather_object(ranks, mine)
        if _writes_result(world):
            layout = get_strategy(spec.strategy).layout(spec)
            result = {"ranks": ranks, "device_name": device_name(world.device), "backend": world.backend,
                      "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
                      "layout": {"dp_replicate": layout.dp_replicate, "dp_shard": layout.dp_shard,
                                 "tp": layout.tp, "pp": layout.pp}}
            with open(args.out, "w") as f:
                json.dump(result, f)
    finally:
        close_world()
    return 0


if __name__ == "__main__":
    code = main()
    # The result is written and the process group closed.  Skip interpreter teardown: with the CPU
    # profiler and more than one intra-op thread, static destruction at exit aborts now and then
    # ("terminate called without an active exception", about 1 run in 8 of `single` here), which
    # would turn a finished run into an error.  An exception in main() still exits the normal way.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
