"""The command-line flags: those that describe a RunSpec (run, sweep, estimate, simulate), the knobs, several
hosts, and the GPU to fit; and the spec fields they give."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.core.errors import SpecError
from harness.core.limits import check_int
from harness.core.spec import RunSpec
from harness.estimate.fit import GPUS
from harness.run.nodes import Rendezvous


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


def spec_flags(p: argparse.ArgumentParser, sweep: bool) -> None:
    d = RunSpec()
    if not sweep:
        p.add_argument("--model", default=d.model, help="zoo name (see `spacetime zoo`)")
        p.add_argument("--strategy", default=d.strategy, help="see `spacetime strategies`")
        p.add_argument("--nproc", type=int_arg, default=d.nproc, help="ranks (processes) on this host")
        p.add_argument("--batch-size", type=int_arg, default=d.batch_size, help="micro-batch per data-parallel rank")
    p.add_argument("--steps", type=int_arg, default=None if sweep else d.steps, help="timed steps")
    p.add_argument("--warmup", type=int_arg, default=None if sweep else d.warmup, help="untimed steps first")
    p.add_argument("--memory-steps", type=int_arg, default=d.memory_steps,
                   help="untimed steps under the memory probe, after warmup (peak = max over them)")
    p.add_argument("--seq-len", type=int_arg, default=None if sweep else d.seq_len)
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument("--seed", type=int_arg, default=d.seed)
    p.add_argument("--lr", type=float_arg, default=d.lr)
    p.add_argument("--tp", type=int_arg, default=d.tp, help="tensor-parallel degree (0: strategy default)")
    p.add_argument("--dp-replicate", type=int_arg, default=d.dp_replicate, help="HSDP replica groups (0: 2)")
    p.add_argument("--timeout", dest="timeout_s", type=float_arg, default=d.timeout_s, help="seconds per run")
    _knob_flags(p, d, sweep)
    p.add_argument("--store", type=Path, default=None, help="results folder (default ./spacetime-results "
                   "or $SPACETIME_STORE)")
    p.add_argument("--no-store", action="store_true", help="do not write records")
    add_node_flags(p)


def _knob_flags(p: argparse.ArgumentParser, d: RunSpec, sweep: bool) -> None:
    """The memory knobs (harness/core/knobs.py has the valid values; they are checked before launch)."""
    from harness.core.knobs import CHECKPOINTING, DTYPES, OPTIMIZERS, QUANT

    def default(value: Any) -> Any:
        return None if sweep else value  # a sweep's preset sets its own; a flag given overrides it

    k = p.add_argument_group("memory knobs")
    k.add_argument("--dtype", default=default(d.dtype), help=f"{', '.join(DTYPES)} (bf16/fp16: mixed precision)")
    k.add_argument("--activation-checkpointing", default=default(d.activation_checkpointing),
                   help=", ".join(CHECKPOINTING))
    k.add_argument("--ckpt-every", type=int_arg, default=default(d.ckpt_every), help="selective: every K-th block")
    k.add_argument("--lora-rank", type=int_arg, default=default(d.lora_rank), help="LoRA rank (0: full fine-tuning)")
    k.add_argument("--lora-alpha", type=int_arg, default=default(d.lora_alpha))
    k.add_argument("--lora-targets", default=default(d.lora_targets), help="q,k,v,o,gate,up,down or all-linear")
    k.add_argument("--quant", default=default(d.quant), help=f"{', '.join(QUANT)}: frozen base weights (LoRA)")
    k.add_argument("--optimizer", default=default(d.optimizer), help=", ".join(OPTIMIZERS))
    k.add_argument("--grad-accum", type=int_arg, default=default(d.grad_accum), help="micro-batches per step")
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
    g.add_argument("--nnodes", type=int_arg, default=None, help="hosts in the run (default 1); --nproc counts the "
                   "ranks of all hosts")
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
