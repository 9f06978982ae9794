"""Memory knobs: the valid values of each RunSpec knob field and their validation before launch.

What each knob does to the model and the step lives in harness/adapters.py (LoRA, quantization, activation
checkpointing) and harness/training.py (precision, optimizer, gradient accumulation).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.spec import RunSpec

DTYPES = ("fp32", "bf16", "fp16", "bf16-pure")  # bf16/fp16: mixed precision over fp32 master weights
CHECKPOINTING = ("off", "full", "selective")  # selective: every --ckpt-every-th block
QUANT = ("none", "int8", "nf4")  # frozen base weights through bitsandbytes
OPTIMIZERS = ("adamw", "adamw8bit", "sgd", "adafactor")  # adamw8bit: torchao's, which also takes DTensors
# --lora-targets short names -> the zoo's module names
LORA_MODULES = {"q": "wq", "k": "wk", "v": "wv", "o": "wo", "gate": "w1", "up": "w3", "down": "w2"}
ALL_LINEAR = "all-linear"  # every projection in the blocks (not the embedding or the output head)


def lora_modules(targets: str) -> list[str]:
    """The zoo module names `--lora-targets` selects (validated)."""
    from harness.spec import SpecError

    if targets == ALL_LINEAR:
        return list(LORA_MODULES.values())
    names = [t.strip() for t in targets.split(",") if t.strip()]
    bad = [t for t in names if t not in LORA_MODULES]
    if bad or not names:
        raise SpecError("lora_targets", f"unknown target(s) {', '.join(bad) or repr(targets)}",
                        f"a comma-separated subset of {','.join(LORA_MODULES)}, or {ALL_LINEAR}")
    return [LORA_MODULES[t] for t in names]


def _choice(spec: RunSpec, field: str, valid: tuple[str, ...]) -> None:
    from harness.spec import SpecError

    value = getattr(spec, field)
    if value not in valid:
        raise SpecError(field, f"unknown value {value!r}", ", ".join(valid))


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def validate(spec: RunSpec) -> None:
    """Field values and combinations that can never run: SpecError.  Valid but not runnable here (a package
    missing, a device that lacks the kernels): Unsupported."""
    from harness.spec import SpecError, Unsupported

    _choice(spec, "dtype", DTYPES)
    _choice(spec, "activation_checkpointing", CHECKPOINTING)
    _choice(spec, "quant", QUANT)
    _choice(spec, "optimizer", OPTIMIZERS)
    for field in ("ckpt_every", "grad_accum"):
        value = getattr(spec, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SpecError(field, f"must be an integer >= 1, got {value!r}")
    if not isinstance(spec.lora_rank, int) or spec.lora_rank < 0:
        raise SpecError("lora_rank", f"must be an integer >= 0 (0: full fine-tuning), got {spec.lora_rank!r}")
    if not isinstance(spec.lora_alpha, int) or spec.lora_alpha < 1:
        raise SpecError("lora_alpha", f"must be an integer >= 1, got {spec.lora_alpha!r}")
    lora_modules(spec.lora_targets)
    if spec.quant != "none" and spec.lora_rank == 0:
        raise SpecError("quant", f"{spec.quant} base weights are frozen, so they need adapters to train: "
                        "add --lora-rank N", "none (without --lora-rank)")
    if spec.lora_rank and not _have("peft"):
        raise Unsupported("--lora-rank needs peft, which is not installed (pip install 'spacetime[peft]')")
    if spec.quant != "none" and not _have("bitsandbytes"):
        raise Unsupported("--quant needs bitsandbytes, which is not installed (pip install 'spacetime[bnb]')")
    if spec.optimizer == "adamw8bit" and not _have("torchao"):
        raise Unsupported("--optimizer adamw8bit needs torchao, which is not installed "
                          "(pip install 'spacetime[bnb]')")


def fast_16bit_cpu() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX).  Without, torch's CPU build
    runs bf16/fp16 training steps about 30x slower than fp32 (125m, batch 1 x 128: 72 s against 2.4 s)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def knob_label(row: dict[str, Any]) -> str:
    """The knobs a record (or spec as a dict) moved off their defaults, short: `bf16, ckpt full, lora r8 q,v`."""
    parts = []
    if row.get("dtype", "fp32") != "fp32":
        parts.append(row["dtype"])
    ckpt = row.get("activation_checkpointing", "off")
    if ckpt == "full":
        parts.append("ckpt full")
    elif ckpt == "selective":
        parts.append(f"ckpt 1/{row.get('ckpt_every')}")
    if row.get("lora_rank"):
        parts.append(f"lora r{row['lora_rank']} {row.get('lora_targets')}")
    if row.get("quant", "none") != "none":
        parts.append(row["quant"])
    if row.get("optimizer", "adamw") != "adamw":
        parts.append(row["optimizer"])
    if (row.get("grad_accum") or 1) > 1:
        parts.append(f"accum {row['grad_accum']}")
    return ", ".join(parts) or "-"
