"""The command-line flags, in groups; each command asks for the groups it uses.

  one spec      --model, --strategy, --nproc, --batch-size     run, estimate, simulate (sweep has its own)
  shape         --seq-len, --tp, --dp-replicate, --device      run, sweep, estimate, simulate
  knobs         the memory knobs and a custom model            run, sweep, estimate, simulate
  measure       --steps, --warmup, --memory-steps, --seed, --lr, --timeout, --store, --no-store   run, sweep
  hosts         --nnodes, --node-rank, --rdzv-*                run, sweep
  fit           --gpu, --gpu-memory, --json                    estimate, simulate

`estimate` and `simulate` take only the flags that change their figures.  Every help text shows the flag's
default (DefaultsFormatter); in a sweep a flag left out takes the preset's value."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.core.errors import SpecError
from harness.core.limits import check_int
from harness.core.spec import RunSpec
from harness.estimate.fit import GPUS
from harness.run.nodes import Rendezvous

NPROC_HELP = "ranks in all (the world size), over every host"
PRESETS_DEFAULT = "(default: the preset's)"
STORE_HELP = "results folder (default: $SPACETIME_STORE or ./spacetime-results)"


class DefaultsFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, unless the help says it already or there is none to show
    (None, or False for a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if not action.option_strings or "(default" in text or not shown:
            return text
        return f"{text} (default: %(default)s)"


def int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def float_arg(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


class _Adder:
    """add_argument with the spec's default, or, in a sweep, none (the preset's) and a help that says so."""

    def __init__(self, group: Any, sweep: bool) -> None:
        self.group, self.sweep = group, sweep

    def __call__(self, flag: str, default: Any, help: str, preset: bool = True, **kw: Any) -> None:
        if self.sweep and preset:
            default, help = None, f"{help} {PRESETS_DEFAULT}"
        self.group.add_argument(flag, default=default, help=help, **kw)


def spec_flags(p: argparse.ArgumentParser, sweep: bool) -> None:
    """Every flag of a measured spec: run and sweep."""
    if not sweep:
        one_spec_flags(p)
    shape_flags(p, sweep)
    measure_flags(p, sweep)
    knob_flags(p, sweep)
    store_flags(p)
    add_node_flags(p)


def figure_flags(p: argparse.ArgumentParser) -> None:
    """The flags that change estimate's and simulate's figures."""
    one_spec_flags(p)
    shape_flags(p, sweep=False, target=True)
    knob_flags(p, sweep=False, figures=True)


def one_spec_flags(p: argparse.ArgumentParser) -> None:
    d = RunSpec()
    p.add_argument("--model", default=d.model, help="a zoo name (see `spacetime zoo`)")
    p.add_argument("--strategy", default=d.strategy, help="see `spacetime strategies`")
    p.add_argument("--nproc", type=int_arg, default=d.nproc, help=NPROC_HELP)
    p.add_argument("--batch-size", type=int_arg, default=d.batch_size,
                   help="micro-batch: sequences per data-parallel rank in each forward")


def shape_flags(p: argparse.ArgumentParser, sweep: bool, target: bool = False) -> None:
    """Sequence length, the mesh and the device (`target`: the device the figures are for, not this host)."""
    d, add = RunSpec(), _Adder(p, sweep)
    add("--seq-len", d.seq_len, "tokens per sequence", type=int_arg)
    add("--tp", d.tp, "tensor-parallel degree (0: the strategy's default)", preset=False, type=int_arg)
    add("--loss-parallel", d.loss_parallel, "tp, tp_sp, fsdp_tp, fsdp_tp_sp: keep the logits sharded over the "
        "vocabulary into the cross-entropy (loss parallelism)", preset=False, action="store_true")
    add("--dp-replicate", d.dp_replicate, "HSDP replica groups (0: the strategy's default, 2)", preset=False,
        type=int_arg)
    add("--pp", d.pp, "pipeline ranks (0: the strategy's default)", preset=False, type=int_arg)
    add("--pp-virtual", d.pp_virtual, "pipeline stages per pipeline rank (0: the strategy's default)",
        preset=False, type=int_arg)
    add("--pp-microbatches", d.pp_microbatches, "micro-batches per rank's batch in a pipeline (0: --pp)",
        preset=False, type=int_arg)
    add("--cp", d.cp, "context-parallel ranks sharing each sequence: cp, fsdp_cp, fsdp_tp_cp (0: the strategy's "
        "default)", preset=False, type=int_arg)
    device = ("the target: auto (the same as cuda) or cpu (no CUDA context; offload moves nothing out)" if target
              else "auto (one GPU per rank if this host has enough, else the CPU), cpu or cuda")
    add("--device", d.device, device, preset=False)


def measure_flags(p: argparse.ArgumentParser, sweep: bool) -> None:
    """How a measured run goes; no figure of estimate or simulate depends on them."""
    d, add = RunSpec(), _Adder(p.add_argument_group("measurement"), sweep)
    add("--steps", d.steps, "timed steps", type=int_arg)
    add("--warmup", d.warmup, "untimed steps first (optimizer state exists after the first)", type=int_arg)
    add("--memory-steps", d.memory_steps, "untimed steps under the memory probe, after warmup (peak = max over "
        "them)", preset=False, type=int_arg)
    add("--seed", d.seed, "seed of the initial weights and the token data", preset=False, type=int_arg)
    add("--lr", d.lr, "the optimizer's learning rate", preset=False, type=float_arg)
    add("--timeout", d.timeout_s, "seconds a run may take before it is stopped and recorded as `timeout`",
        preset=False, dest="timeout_s", type=float_arg)


def store_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("records")
    g.add_argument("--store", type=Path, default=None, help=STORE_HELP)
    g.add_argument("--no-store", action="store_true", help="do not write records")


def knob_flags(p: argparse.ArgumentParser, sweep: bool, figures: bool = False) -> None:
    """The memory knobs (harness/core/knobs.py has the valid values; they are checked before launch) and a
    custom model.  `figures`: without --lora-alpha, which scales the adapters' output and moves no byte."""
    from harness.core.knobs import CHECKPOINTING, COMPILE, DTYPES, LOSSES, OPTIMIZERS, QUANT

    d, add = RunSpec(), _Adder(p.add_argument_group("memory knobs"), sweep)
    add("--dtype", d.dtype, f"{', '.join(DTYPES)} (bf16, fp16: mixed precision over fp32 weights; bf16-pure: "
        "16-bit weights)")
    add("--activation-checkpointing", d.activation_checkpointing, f"{', '.join(CHECKPOINTING)} (op: matmul and "
        "attention outputs kept, the rest recomputed, in every block)")
    add("--ckpt-every", d.ckpt_every, "selective checkpointing: every K-th block", type=int_arg)
    add("--lora-rank", d.lora_rank, "LoRA rank (0: full fine-tuning)", type=int_arg)
    if not figures:
        add("--lora-alpha", d.lora_alpha, "LoRA scaling: the adapters' output is multiplied by alpha / rank",
            type=int_arg)
    add("--lora-targets", d.lora_targets, "the projections LoRA adapts: a subset of q,k,v,o,gate,up,down, or "
        "all-linear")
    add("--quant", d.quant, f"{', '.join(QUANT)}: the frozen base weights under LoRA")
    add("--optimizer", d.optimizer, ", ".join(OPTIMIZERS))
    add("--grad-accum", d.grad_accum, "micro-batches per optimizer step", type=int_arg)
    add("--loss", d.loss_type, f"{', '.join(LOSSES)} (chunked: the output projection and cross-entropy one chunk of "
        "the sequence at a time, as torchtune's chunked loss)", dest="loss_type")
    add("--loss-chunks", d.loss_chunks, "chunked loss: chunks of the sequence", type=int_arg)
    add("--compile", d.compile, f"{', '.join(COMPILE)}: torch.compile (Inductor) of each transformer block, or of "
        "the whole model; compiled in the warmup steps")
    m = p.add_argument_group("custom model")
    m.add_argument("--model-config", dest="model_config_file", type=Path, default=None,
                   help="a Hugging Face config.json of a Llama-family model (replaces --model)")
    m.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE",
                   help="override a shape field of the model, e.g. --set n_layers=4 (repeatable)")


def spec_fields(args: argparse.Namespace, model: str | None = None) -> dict[str, Any]:
    """RunSpec fields from the flags; --model-config / --set become a custom `model_config`."""
    from harness.models.hf_config import custom_config

    names = RunSpec.__dataclass_fields__
    fields = {k: v for k, v in vars(args).items() if k in names and v is not None}
    cfg = custom_config(model or fields.get("model", RunSpec().model), args.model_config_file, args.sets or [])
    if cfg is not None:
        fields.update(model=cfg.name, model_config=cfg.to_json())
    return fields


def add_node_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several hosts (torchrun c10d rendezvous)")
    g.add_argument("--nnodes", type=int_arg, default=None, help="hosts in the run; each runs nproc / nnodes of "
                   "the --nproc ranks (default: 1)")
    g.add_argument("--node-rank", type=int_arg, default=0, help="this host, 0..nnodes-1; node 0 keeps the records")
    g.add_argument("--rdzv-endpoint", default=None, help="host:port on node 0 where the hosts meet")
    g.add_argument("--rdzv-id", default="spacetime", help="the same on every host of one job, e.g. $SLURM_JOB_ID")


def rendezvous_from(args: argparse.Namespace) -> Rendezvous | None:
    """The rendezvous the flags describe, checked before anything is launched; None on one host."""
    nnodes = check_int("nnodes", 1 if args.nnodes is None else args.nnodes)
    check_int("node_rank", args.node_rank)
    if nnodes == 1:
        if args.node_rank or args.rdzv_endpoint:
            raise SpecError("nnodes", "--node-rank/--rdzv-endpoint need --nnodes > 1", "an integer > 1")
        return None
    if not args.rdzv_endpoint:
        raise SpecError("rdzv_endpoint", f"a run on {nnodes} hosts needs where they meet", "HOST:PORT on node 0")
    host, _, port = args.rdzv_endpoint.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise SpecError("rdzv_endpoint", f"expected HOST:PORT, got {args.rdzv_endpoint!r}", "HOST:PORT on node 0")
    if not 0 <= args.node_rank < nnodes:
        raise SpecError("node_rank", f"{args.node_rank} is not a host of {nnodes}", f"0..{nnodes - 1}")
    return Rendezvous(args.rdzv_endpoint, args.node_rank, args.rdzv_id)


def add_fit_flags(p: argparse.ArgumentParser) -> None:
    """--gpu, --gpu-memory and --json, shared by estimate and simulate."""
    p.add_argument("--gpu", help=f"check the fit on a GPU: {', '.join(GPUS)}")
    p.add_argument("--gpu-memory", help="check the fit on this much memory, e.g. 80GiB or 24GB")
    p.add_argument("--json", action="store_true", help="one JSON object as the last stdout line")
