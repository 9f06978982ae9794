"""The cases `ci/gpu-check` measures, most valuable first, and the command line of each.

Every measured case is one `spacetime run ... --device cuda --predict --simulate --json`, so the measured,
estimated and simulated figures all come from the project's own code.  Sizes are chosen to fit one H200
(141 GB) with room for the estimate's own error, according to `spacetime estimate --gpu H200-141GB`:

- full fine-tuning of `8b` in bf16 mixed precision with AdamW holds fp32 weights, gradients and two moments
  (16 B/param, 128 GB) and, at the optimizer step, foreach AdamW's full-size temporary (32 GB more): 160.6 GB,
  whatever the batch or checkpointing.  The two full `8b` cases therefore train with SGD with momentum
  (12 B/param): `single` 8b at batch 1 x 2048 (99 GB, activations included) and with full checkpointing at
  batch 4 x 2048 (96 GB).
- `1b` and `3b` train with AdamW at batch 4 x 2048 (48 GB and 97 GB, peak at the start of backward: the
  activations); `125m` at batch 1 x 512 peaks at the optimizer step (2.7 GB), where AdamW's foreach temporary
  and the allocator's rounding of many small tensors show.
- LoRA and QLoRA train adapters only: batch 4 x 2048 (104 GB and 80 GB, activations dominate).
- the one-rank sharding and offload cases use `1b` at batch 4 x 2048 (30-53 GB).

`expected_s` is the planned wall time of the whole case (torchrun start-up, the steps, estimate and the
simulation of the same spec in a process of its own); `timeout_s` is the most it may take.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTEXT_SCRIPT = Path(__file__).with_name("context.py")
STEPS = ("--warmup", "2", "--memory-steps", "1", "--steps", "5")  # enough for a stable p50, little device time
BF16 = ("--dtype", "bf16")


@dataclass(frozen=True)
class Case:
    name: str
    why: str  # what the case checks
    flags: tuple[str, ...]  # the spec's `spacetime run` flags; empty for the CUDA-context probe
    expected_s: float
    timeout_s: float

    @property
    def is_context(self) -> bool:
        return not self.flags


def _run_case(name: str, why: str, flags: str, expected_s: float, timeout_s: float) -> Case:
    return Case(name, why, (*flags.split(), *BF16, *STEPS), expected_s, timeout_s)


CASES: tuple[Case, ...] = (
    Case("cuda-context", "driver-level used memory before and after CUDA init, against estimate's context",
         (), 15, 60),
    _run_case("single-1b", "bf16 mixed, AdamW: peak, step time, MFU", "--model 1b --strategy single "
              "--batch-size 4 --seq-len 2048", 25, 120),
    _run_case("single-8b", "bf16 mixed, SGD momentum (AdamW cannot fit): peak, step time, MFU",
              "--model 8b --strategy single --optimizer sgd --batch-size 1 --seq-len 2048", 45, 180),
    _run_case("single-3b", "bf16 mixed, AdamW: peak, step time, MFU", "--model 3b --strategy single "
              "--batch-size 4 --seq-len 2048", 35, 150),
    _run_case("single-125m", "bf16 mixed, AdamW, peak at the optimizer step: foreach temporary, rounding",
              "--model 125m --strategy single --batch-size 1 --seq-len 512", 15, 90),
    _run_case("8b-lora-r8", "LoRA r=8 on q,v, frozen bf16 base", "--model 8b --strategy single --lora-rank 8 "
              "--batch-size 4 --seq-len 2048", 40, 150),
    _run_case("8b-ckpt-full", "full activation checkpointing, SGD momentum", "--model 8b --strategy single "
              "--activation-checkpointing full --optimizer sgd --batch-size 4 --seq-len 2048", 45, 180),
    _run_case("8b-qlora-nf4", "QLoRA: nf4 base weights (bitsandbytes on CUDA), LoRA r=8",
              "--model 8b --strategy single --lora-rank 8 --quant nf4 --batch-size 4 --seq-len 2048", 50, 180),
    _run_case("fsdp_full_shard-1rank", "FSDP2 on one NCCL rank", "--model 1b --strategy fsdp_full_shard "
              "--nproc 1 --batch-size 4 --seq-len 2048", 30, 120),
    _run_case("ddp-1rank", "DDP on one NCCL rank: gradient buckets", "--model 1b --strategy ddp --nproc 1 "
              "--batch-size 4 --seq-len 2048", 30, 120),
    _run_case("fsdp_offload-1rank", "FSDP2 CPU offload, pinned memory", "--model 1b --strategy fsdp_offload "
              "--nproc 1 --batch-size 4 --seq-len 2048", 40, 150),
    _run_case("fsdp1_offload-1rank", "FSDP1 CPU offload, pinned memory", "--model 1b --strategy fsdp1_offload "
              "--nproc 1 --batch-size 4 --seq-len 2048", 35, 150),
    _run_case("zero3-1rank", "DeepSpeed ZeRO-3 on one rank, FusedAdam (may build its op first)",
              "--model 1b --strategy zero3 --nproc 1 --batch-size 4 --seq-len 2048", 45, 240),
)


def run_command(case: Case, store: str, timeout_s: float, dry_run: bool = False) -> list[str]:
    """The command line of `case`: the context probe, or `spacetime run` (as `python -m harness.cli`, so a
    checkout that was not installed runs too).  The measurement's own --timeout leaves a third of the case's
    time to the simulation that follows it."""
    if case.is_context:
        return [sys.executable, str(CONTEXT_SCRIPT), *(["--dry-run"] if dry_run else [])]
    measure_s = max(30, int(timeout_s * 2 / 3))
    command = [sys.executable, "-m", "harness.cli", "run", *case.flags, "--device", "cuda",
               "--timeout", str(measure_s), "--predict", "--simulate", "--json", "--store", store]
    return command + (["--dry-run"] if dry_run else [])


def total_expected_s(cases: tuple[Case, ...] = CASES) -> float:
    return sum(case.expected_s for case in cases)
