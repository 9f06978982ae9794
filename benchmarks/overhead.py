"""What the harness adds to a training step: its timed steps against a bare loop, same ranks, same data.

`python -m benchmarks.overhead` launches one torchrun job (2 ranks; gloo on a CPU) that builds each strategy once
(ddp, then fsdp_full_shard) on `125m` and, on the same process group, alternates blocks of steps:

- harness: `time_steps` over the `Prepared.step` the strategy returns, with the CPU memory counter installed,
  exactly as harness/run/worker.py times a run;
- bare: the model and optimizer the strategy built, driven by a plain forward / loss / backward / step /
  zero_grad loop with `time.perf_counter` around each step and the same synchronization, no harness code, and
  the counting CPU allocator put back to torch's own.

Both blocks of a pair train on the same batches; a pair's order alternates (AB, BA, AB, ...) so a drift of the
machine's speed cancels.  Each step counts at its slowest rank; a pair's ratio is its harness block's seconds over
its bare block's.  The result (median and spread of the ratios) is printed as a markdown table and, with
--out, written there (benchmarks/results/overhead-125m-cpu.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.overhead_report import markdown

STRATEGIES = ("ddp", "fsdp_full_shard")


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_block(model: Any, optimizer: Any, batches: Sequence[Any], device: Any) -> tuple[list[float], Any]:
    """A plain training loop: the wall seconds of each step and the last loss."""
    import torch.nn.functional as F

    durations, loss = [], None
    for inputs, targets in batches:
        _sync(device)
        start = time.perf_counter()
        logits = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        durations.append(time.perf_counter() - start)
    return durations, loss


def harness_block(prepared: Any, batches: Sequence[Any], device: Any) -> tuple[list[float], Any]:
    """The worker's timed steps: the wall seconds of each step and the last loss."""
    from harness.train.measure import time_steps

    return time_steps(prepared.step, batches, device)


def spec_for(model: str, strategy: str, nproc: int, global_batch: int, seq_len: int, steps: int,
             device: str) -> Any:
    """The sweep's spec for one strategy (per-rank batch = global batch / data-parallel ranks), with at least
    `steps` batches (warmup + memory steps + timed steps)."""
    from harness.core.spec import RunSpec
    from harness.run.presets import matrix
    from harness.run.validate import validate

    base = RunSpec(seq_len=seq_len, warmup=1, memory_steps=1, steps=max(steps - 2, 1), device=device)
    return validate(matrix([strategy], [model], nproc, global_batch, base)[0])


def _counter(device: Any) -> Any:
    from harness.train.cpu_allocator import counting_allocator

    return counting_allocator() if device.type == "cpu" else None


def measure_strategy(spec: Any, world: Any, pairs: int, block_steps: int, warmup: int, settle: int = 1,
                     bare_counter: bool = False) -> dict[str, Any]:
    """Build the strategy as the worker does, warm both paths up, then `pairs` harness/bare pairs of blocks,
    each block after `settle` untimed steps of its own path (the worker's timed steps follow steps of the same
    path, so the first step after a switch of path is not what it measures).  `bare_counter`: the bare loop
    keeps the CPU memory counter installed (what is left is the step's code)."""
    from harness.models.llama import build_model
    from harness.models.materialize import param_dtype
    from harness.models.zoo import config_for
    from harness.run.worker import local_batches
    from harness.train.measure import memory_probe
    from harness.train.optimizer import make_optimizer_factory
    from strategies import get_strategy

    strategy = get_strategy(spec.strategy)
    batches = local_batches(spec, strategy.layout(spec), world)
    memory_probe(world.device).start()  # the worker installs the counter before the model is built
    model = build_model(config_for(spec), spec.seq_len).to(param_dtype(spec))
    prepared = strategy.wrap(model, make_optimizer_factory(spec), world, spec)
    counter = None if bare_counter else _counter(world.device)

    def run(kind: str, block: Sequence[Any]) -> tuple[list[float], float]:
        """The block's step seconds (wall) and the process's CPU seconds over the whole block."""
        cpu = time.process_time()
        if kind == "harness":
            return harness_block(prepared, block, world.device)[0], time.process_time() - cpu
        if counter is not None:
            counter.uninstall()
        try:
            return bare_block(prepared.model, prepared.optimizer, block, world.device)[0], time.process_time() - cpu
        finally:
            if counter is not None:
                counter.install()

    for kind in ("harness", "bare"):
        run(kind, batches[:warmup])
    blocks: dict[str, list[Any]] = {"harness": [], "bare": [], "harness_cpu": [], "bare_cpu": []}
    first = []
    for pair in range(pairs):
        block = batches[warmup + pair * block_steps: warmup + (pair + 1) * block_steps]
        order = ("harness", "bare") if pair % 2 == 0 else ("bare", "harness")
        first.append(order[0])
        for kind in order:
            run(kind, block[:settle]) if settle else None
            wall, cpu = run(kind, block)
            blocks[kind].append(wall)
            blocks[f"{kind}_cpu"].append(cpu)
    return {"rank": world.rank, **blocks, "first": first}


def summarize(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per pair: each step at its slowest rank, summed over the block; the ratio harness / bare.  And the same
    ratio of CPU seconds (all ranks' processes over each block), which a busy machine disturbs less."""
    from harness.train.measure import percentile

    def block_seconds(kind: str) -> list[float]:
        per_rank = [r[kind] for r in ranks]
        return [sum(max(steps) for steps in zip(*(rank[i] for rank in per_rank), strict=True))
                for i in range(len(per_rank[0]))]

    def spread(values: list[float], name: str) -> dict[str, float]:
        return {f"{name}_p50": percentile(values, 50), f"{name}_p10": percentile(values, 10),
                f"{name}_p90": percentile(values, 90), f"{name}_min": min(values), f"{name}_max": max(values)}

    harness, bare = block_seconds("harness"), block_seconds("bare")
    ratios = [h / b for h, b in zip(harness, bare, strict=True)]
    cpu = [sum(r["harness_cpu"][i] for r in ranks) / sum(r["bare_cpu"][i] for r in ranks)
           for i in range(len(ratios))]
    steps = len(ranks[0]["harness"][0])
    return {"ratios": ratios, **spread(ratios, "ratio"), "cpu_ratios": cpu, **spread(cpu, "cpu_ratio"),
            "harness_step_s": percentile(harness, 50) / steps, "bare_step_s": percentile(bare, 50) / steps,
            "first": ranks[0]["first"]}


def rank_job(args: argparse.Namespace) -> int:
    """One rank of the torchrun job: every strategy in turn on one process group; rank 0 writes --json."""
    import torch
    import torch.distributed as dist

    from harness.train.world import close_world, init_world

    world = init_world(args.device)
    results: dict[str, Any] = {}
    try:
        for name in args.strategies.split(","):
            spec = spec_for(args.model, name, world.world_size, args.global_batch, args.seq_len,
                            args.warmup + args.pairs * args.block_steps, args.device)
            torch.manual_seed(spec.seed)
            mine = measure_strategy(spec, world, args.pairs, args.block_steps, args.warmup, args.settle,
                                    args.bare_counter)
            gc.collect()  # the strategy's model and optimizer, before the next is built
            ranks: list[Any] = [None] * world.world_size
            dist.all_gather_object(ranks, mine)
            results[name] = summarize(ranks)
        if world.rank == 0:
            Path(args.json).write_text(json.dumps({"strategies": results, "torch": torch.__version__,
                                                   "world_size": world.world_size, "backend": world.backend}))
    finally:
        close_world()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="125m")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--global-batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=8, help="harness/bare pairs of blocks per strategy")
    parser.add_argument("--block-steps", type=int, default=2, help="steps per block")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each path before the pairs")
    parser.add_argument("--settle", type=int, default=1, help="untimed steps before each block, of its own path")
    parser.add_argument("--bare-counter", action="store_true",
                        help="keep the CPU memory counter installed in the bare loop too (a diagnosis: the ratio is "
                             "then the step code's alone)")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)  # the rank job's result file
    parser.add_argument("--rank-job", action="store_true", help=argparse.SUPPRESS)
    return parser


def options(**values: Any) -> argparse.Namespace:
    """The job's options: the command line's defaults with `values` replaced (names as the flags', with _)."""
    args = _parser().parse_args([])
    for name, value in values.items():
        if not hasattr(args, name):
            raise TypeError(f"unknown option {name!r}")
        setattr(args, name, value)
    return args


_JOB_OPTIONS = ("model", "strategies", "device", "global_batch", "seq_len", "pairs", "block_steps", "warmup",
                "settle")


def _job_args(args: argparse.Namespace, json_path: str) -> list[str]:
    values = [[f"--{name.replace('_', '-')}", str(getattr(args, name))] for name in _JOB_OPTIONS]
    return ["--rank-job", "--json", json_path, *(["--bare-counter"] if args.bare_counter else []),
            *(part for pair in values for part in pair)]


def run_job(args: argparse.Namespace) -> dict[str, Any]:
    """Launch the torchrun job and return its result (raises CalledProcessError when it fails)."""
    from harness.core.host import PROJECT_ROOT

    if args.device == "cpu":
        _counter_library()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT),
                                                                   os.environ.get("PYTHONPATH", "")) if p)}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="spacetime-overhead-") as tmp:
        out = str(Path(tmp) / "result.json")
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc-per-node={args.nproc}", "-m", "benchmarks.overhead", *_job_args(args, out)],
                       env=env, check=True, cwd=PROJECT_ROOT)
        result: dict[str, Any] = json.loads(Path(out).read_text())
    result["load_average"] = [load, os.getloadavg()[0]]  # how busy the machine was, at the start and the end
    return result


def _counter_library() -> None:
    """Build (or check) the counting allocator here, once; the ranks load the library this names."""
    from harness.train.cpu_allocator import counting_allocator

    counting_allocator()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.rank_job:
        code = rank_job(args)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # as the worker: skip interpreter teardown once the result is written
    command = "python -m benchmarks.overhead " + " ".join(argv if argv is not None else sys.argv[1:])
    result = run_job(args)
    text = markdown(result, args, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
