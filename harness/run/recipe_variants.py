"""The rows of the `recipes` preset (harness/run/presets.py holds the presets): the fine-tuning recipes users run,
added one step at a time on one model under FSDP2 (fsdp_full_shard), so each row's peak and time change is
against the row before it (the levers table).

Each step is a set of RunSpec changes kept from the steps before it.  A step's knob that this build cannot run
under FSDP (a quantized base FSDP2 cannot shard) still plans its row, which the strategy answers `unsupported`
with the reason: a step never drops out of the table.
"""

from __future__ import annotations

from typing import Any

from harness.core.knobs import QUANT
from harness.core.spec import RunSpec

# QLoRA's base: torchao's NF4, which FSDP2 shards; where this build lacks it, bitsandbytes' NF4, which
# fsdp_full_shard answers `unsupported` with its reason (the row stays, with the reason)
QLORA_QUANT = "nf4-torchao" if "nf4-torchao" in QUANT else "nf4"

RECIPE_STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("full loss", {"dtype": "bf16"}),  # fp32 on a CPU without fast 16-bit matmuls (the preset says)
    ("chunked loss", {"loss_type": "chunked"}),
    ("compiled blocks", {"compile": "blocks"}),
    ("op-level checkpointing", {"activation_checkpointing": "op"}),
    ("QLoRA", {"lora_rank": 8, "lora_targets": "all-linear", "quant": QLORA_QUANT}),
)


def cumulative(steps: tuple[tuple[str, dict[str, Any]], ...]) -> tuple[dict[str, Any], ...]:
    """Each step's changes with every earlier step's; a field RunSpec lacks is an error here, at import, not a
    row that vanishes."""
    known, rows = set(RunSpec.__dataclass_fields__), []
    held: dict[str, Any] = {}
    for name, changes in steps:
        missing = sorted(set(changes) - known)
        if missing:
            raise ValueError(f"recipes step {name!r}: RunSpec has no field {', '.join(missing)}")
        held = {**held, **changes}
        rows.append(dict(held))
    return tuple(rows)


RECIPES = cumulative(RECIPE_STEPS)
