"""The range of every integer flag and model shape field, and of the float flags, checked in one place.

Each upper bound is a power of two at least four times what the largest published model or training run uses
(a world of a million ranks, a 16M-token sequence, a 2M-token vocabulary), and small enough that the arithmetic
on them stays exact and finite: the largest tensor a rank builds (the logits, batch x sequence x vocabulary,
2**59 elements at most) has an int64 size, and every figure `estimate` computes stays far inside float range
(about 2**71 bytes with every bound at once, where an unbounded flag overflowed).
docs/knobs.md lists them.
"""

from __future__ import annotations

import math
from typing import Any

from harness.core.errors import SpecError

MAX_RANKS = 2**20  # world size, hosts, tensor-parallel degree, replica groups
MAX_SECONDS = 30 * 24 * 3600.0  # --timeout: 30 days

# field (RunSpec field, CLI-only flag, or model shape field) -> (smallest, largest)
LIMITS: dict[str, tuple[int, int]] = {
    # RunSpec fields
    "nproc": (1, MAX_RANKS), "nnodes": (1, MAX_RANKS), "tp": (0, MAX_RANKS), "dp_replicate": (0, MAX_RANKS),
    "pp": (0, MAX_RANKS), "pp_virtual": (0, 2**10), "pp_microbatches": (0, 2**14), "cp": (0, MAX_RANKS),
    "batch_size": (1, 2**14), "seq_len": (1, 2**24), "grad_accum": (1, 2**14),
    "warmup": (1, 2**20), "memory_steps": (1, 2**20), "steps": (1, 2**20),
    "seed": (0, 2**32 - 1), "ckpt_every": (1, 2**10), "lora_rank": (0, 2**16), "lora_alpha": (1, 2**16),
    "loss_chunks": (1, 2**16),
    # generate: prompt + new tokens is a sequence (seq_len's bound), batch x beams the rows of a batch
    "prompt_len": (1, 2**24), "new_tokens": (1, 2**24), "num_beams": (1, 2**14),
    # flags of sweep and show only
    "global_batch": (1, 2**34), "repeat": (1, 1000), "last": (1, 2**31), "node_rank": (0, MAX_RANKS - 1),
    # model shape (--model-config, --set)
    "dim": (1, 2**16), "ffn_dim": (1, 2**18), "n_layers": (1, 2**10), "n_heads": (1, 2**10),
    "n_kv_heads": (1, 2**10), "vocab_size": (1, 2**21), "head_size": (0, 2**12), "sliding_window": (0, 2**24),
    "sliding_every": (1, 2**10),
}
# RunSpec float fields -> (smallest, largest); both finite
FLOAT_LIMITS: dict[str, tuple[float, float]] = {"timeout_s": (1.0, MAX_SECONDS)}
SPEC_FIELDS = ("nproc", "nnodes", "tp", "dp_replicate", "batch_size", "seq_len", "grad_accum", "warmup",
               "memory_steps", "steps", "seed", "ckpt_every", "lora_rank", "lora_alpha", "timeout_s", "lr",
               "prompt_len", "new_tokens", "num_beams", "pp", "pp_virtual", "pp_microbatches", "cp")


def shown(value: Any) -> str:
    """A value for a one-line message: repr, with a long number cut to its first digits and length."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4,300-digit conversion limit
        return "a number of over 4300 digits"
    if isinstance(value, int) and len(text) > 24:
        return f"{text[:12]}... ({len(text)} digits)"
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(field: str, value: Any, flag: str | None = None, label: str | None = None) -> int:
    """`value` as LIMITS allows for `field`; SpecError naming `flag` (default: the field's own) and, under
    another flag, `label` (default: the field) otherwise."""
    lo, hi = LIMITS[field]
    name = flag or field
    what = "" if name == field else (label or field) + " "
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(name, f"{what}must be an integer, got {shown(value)}", f"{lo}..{hi}")
    if value < lo:
        raise SpecError(name, f"{what}must be an integer >= {lo}, got {shown(value)}", f"{lo}..{hi}")
    if value > hi:
        raise SpecError(name, f"{what}must be an integer <= {hi}, got {shown(value)}", f"{lo}..{hi}")
    return value


def check_float(field: str, value: Any) -> float:
    """A finite number in FLOAT_LIMITS' range (`lr`: any finite number > 0)."""
    lo, hi = FLOAT_LIMITS.get(field, (0.0, math.inf))
    valid = f"{lo:.12g}..{hi:.12g}" if field in FLOAT_LIMITS else "a finite number > 0"
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise SpecError(field, f"must be a finite number, got {shown(value)}", valid)
    if field not in FLOAT_LIMITS and not value > 0:
        raise SpecError(field, f"must be > 0, got {value}", valid)
    if value < lo:
        raise SpecError(field, f"must be >= {lo:.12g}, got {value:.12g}", valid)
    if value > hi:
        raise SpecError(field, f"must be <= {hi:.12g}, got {value:.12g}", valid)
    return float(value)


def check_spec_limits(spec: Any) -> None:
    """Every numeric RunSpec field within its range (before any arithmetic on it)."""
    for field in SPEC_FIELDS:
        value = getattr(spec, field)
        if field in LIMITS:
            check_int(field, value)
        else:
            check_float(field, value)
