"""Memory knobs: the valid values of each RunSpec knob field, their validation before launch, and which knobs a
spec moves off their defaults (`moved_knobs`, the one place that decides it).

What each knob does lives with what it changes: harness/models/ (lora.py, quantize.py, checkpointing.py) and
harness/train/ (step.py: precision and gradient accumulation; optimizer.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from harness.core.errors import SpecError, Unsupported
from harness.core.limits import check_int
from harness.core.spec import RunSpec
from harness.core.torchao_choices import WEIGHT_ONLY, check_weight_only, check_weight_only_device

DTYPES = ("fp32", "bf16", "fp16", "bf16-pure")  # bf16/fp16: mixed precision over fp32 master weights
CHECKPOINTING = ("off", "full", "selective", "op")  # selective: every --ckpt-every-th block; op: per op, in every
# block (harness/models/checkpointing.py)
LOSSES = ("full", "chunked")  # chunked: projection and cross-entropy per chunk (harness/models/chunked_loss.py)
COMPILE = ("off", "blocks", "model")  # torch.compile (Inductor) per block or whole (harness/models/compile.py)
QUANT = ("none", "int8", "nf4", "nf4-torchao", *WEIGHT_ONLY)  # frozen base weights: bitsandbytes, or torchao's
# NF4Tensor; generation only: torchao's weight-only int8/int4 (harness/core/torchao_choices.py)
OPTIMIZERS = ("adamw", "adamw8bit", "sgd", "adafactor")  # adamw8bit: torchao's, which also takes DTensors
WORKLOADS = ("train", "generate")
KV_CACHES = ("static", "dynamic")  # static: pre-allocated for prompt + new tokens; dynamic: grows per token
OFFLOADS = ("none", "cpu", "disk")  # generate: weights kept in host memory or on disk (accelerate's big-model path)
# --lora-targets short names -> the zoo's module names
LORA_MODULES = {"q": "wq", "k": "wk", "v": "wv", "o": "wo", "gate": "w1", "up": "w3", "down": "w2"}
ALL_LINEAR = "all-linear"  # every projection in the blocks (not the embedding or the output head)


def lora_modules(targets: str) -> list[str]:
    """The zoo module names `--lora-targets` selects (validated)."""
    if targets == ALL_LINEAR:
        return list(LORA_MODULES.values())
    names = [t.strip() for t in targets.split(",") if t.strip()] if isinstance(targets, str) else []
    bad = [t for t in names if t not in LORA_MODULES]
    if bad or not names:
        shown = ", ".join(t if t.isprintable() else repr(t) for t in bad) or repr(targets)
        raise SpecError("lora_targets", f"unknown target(s) {shown}",
                        f"a comma-separated subset of {','.join(LORA_MODULES)}, or {ALL_LINEAR}")
    return [LORA_MODULES[t] for t in names]


def _choice(spec: RunSpec, field: str, valid: tuple[str, ...]) -> None:
    value = getattr(spec, field)
    if value not in valid:
        raise SpecError(field, f"unknown value {value!r}", ", ".join(valid))


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder that refuses the name: as good as absent
        return False


def validate(spec: RunSpec) -> None:
    """Field values and combinations that can never run: SpecError.  No package is needed to pass: estimate
    does the knobs' arithmetic without them (check_packages, before a run or a simulation)."""
    _choice(spec, "dtype", DTYPES)
    _choice(spec, "activation_checkpointing", CHECKPOINTING)
    _choice(spec, "quant", QUANT)
    _choice(spec, "optimizer", OPTIMIZERS)
    _choice(spec, "loss_type", LOSSES)
    _choice(spec, "compile", COMPILE)
    if spec.compile != "off" and spec.workload == "generate":
        raise SpecError("compile", f"{spec.compile}: generation runs eager; --compile applies to training",
                        "off with --workload generate")
    for field in ("ckpt_every", "grad_accum", "lora_rank", "lora_alpha", "loss_chunks"):  # lora_rank 0: full FT
        check_int(field, getattr(spec, field))
    if spec.loss_type == "chunked" and spec.loss_chunks > spec.seq_len:
        raise SpecError("loss_chunks", f"{spec.loss_chunks} chunks of a {spec.seq_len}-token sequence",
                        f"1..{spec.seq_len} (--seq-len)")
    lora_modules(spec.lora_targets)
    check_weight_only(spec)
    if spec.quant != "none" and spec.lora_rank == 0 and spec.workload == "train":  # generation: as loaded
        raise SpecError("quant", f"{spec.quant} base weights are frozen, so they need adapters to train: "
                        "add --lora-rank N", "none (without --lora-rank)")


def check_packages(spec: RunSpec) -> None:
    """Unsupported when a knob the spec moves needs a package this environment lacks: checked before anything
    is launched (run, sweep) or simulated, never by estimate."""
    if spec.lora_rank and not _have("peft"):
        raise Unsupported("--lora-rank needs peft, which is not installed (pip install 'spacetime[peft]')")
    if spec.quant in ("int8", "nf4") and not _have("bitsandbytes"):
        raise Unsupported("--quant needs bitsandbytes, which is not installed (pip install 'spacetime[bnb]')")
    if spec.quant in ("nf4-torchao", *WEIGHT_ONLY) and not _have("torchao"):
        raise Unsupported(f"--quant {spec.quant} needs torchao, which is not installed (pip install 'spacetime[bnb]')")
    check_weight_only_device(spec)
    if spec.optimizer == "adamw8bit" and not _have("torchao"):
        raise Unsupported("--optimizer adamw8bit needs torchao, which is not installed "
                          "(pip install 'spacetime[bnb]')")


# knob -> (RunSpec field, CLI flag); a knob is "moved" when its field is off the RunSpec default
KNOBS = {"dtype": ("dtype", "--dtype"),
         "activation_checkpointing": ("activation_checkpointing", "--activation-checkpointing"),
         "lora": ("lora_rank", "--lora-rank"), "quant": ("quant", "--quant"), "optimizer": ("optimizer", "--optimizer"),
         "grad_accum": ("grad_accum", "--grad-accum"), "loss": ("loss_type", "--loss"),
         "compile": ("compile", "--compile")}
ALL_KNOBS = frozenset(KNOBS)


def _reader(values: RunSpec | Mapping[str, Any]) -> Callable[[str, Any], Any]:
    """field, default -> value, from a spec or from a stored row (where a missing field reads as its default)."""
    if isinstance(values, Mapping):
        return values.get
    return lambda name, default: getattr(values, name)


def moved_knobs(values: RunSpec | Mapping[str, Any]) -> dict[str, Any]:
    """The knobs a spec (or a stored row) moves off their defaults, each with its value, in KNOBS order."""
    default, get = RunSpec(), _reader(values)
    moved = {}
    for knob, (field, _) in KNOBS.items():
        value = get(field, getattr(default, field))
        if value is not None and value != getattr(default, field):
            moved[knob] = value
    return moved


def knob_label(row: RunSpec | Mapping[str, Any]) -> str:
    """The knobs a record (or spec) moved off their defaults, short: `bf16, ckpt full, lora r8 q,v`."""
    get = _reader(row)
    text: dict[str, Callable[[Any], str]] = {
        "dtype": str, "quant": str, "optimizer": str, "grad_accum": lambda v: f"accum {v}",
        "activation_checkpointing": lambda v: f"ckpt {v}" if v != "selective" else f"ckpt 1/{get('ckpt_every', 2)}",
        "loss": lambda v: f"loss {v}/{get('loss_chunks', 8)}",
        "compile": lambda v: f"compile {v}",
        "lora": lambda v: f"lora r{v} {get('lora_targets', 'q,v')}"}
    return ", ".join(text[knob](value) for knob, value in moved_knobs(row).items()) or "-"
