"""DeepSpeed ZeRO-3 inference: the model's parameters partitioned over the ranks, each module's gathered by
ZeRO's forward hooks just before it runs and released after it, with no optimizer.

`deepspeed.initialize` without an optimizer builds ZeRO-3's parameter offload (`DeepSpeedZeRoOffload`): it
partitions every parameter (each rank keeps 1/N of it, flattened) and hooks each module.  The project's own
generation loop (harness/models/generate.py) then runs on the engine's module, so the tokens, the KV cache and
the measurement are those of every other strategy.  Each rank generates for its own prompts (data parallel, as
ddp's replicas), and every rank takes part in every gather, so all ranks step together.

After every forward the engine's partition cache is emptied (`engine.empty_partition_cache()`, DeepSpeed's own
call), so nothing stays gathered from one forward (a prefill or a decode step) to the next.  Without it, whether
the output projection stayed gathered into the next forward was a race: identical runs differed by one output
projection (tiny, 2 x (64 + 8) tokens in fp32: decode peaks of 20.3 and 23.7 MB), so no peak was repeatable.

What is kept whole: parameters of at most `stage3_param_persistence_threshold` elements (the norms' weights);
what is gathered at once: up to `stage3_prefetch_bucket_size` elements fetched ahead of use, and any gathered
parameter whose next use is within `stage3_max_reuse_distance` elements stays gathered up to
`stage3_max_live_parameters`.  The values are the training config's (strategies/deepspeed.py: the Hugging Face
"auto" values), so a gathered block is released after its forward, as fsdp_full_shard's is.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.world import World

# Why the other ZeRO strategies do not generate (what ZeRO-3 inference is, they are not).
GENERATE_WHY_NOT = {
    1: "ZeRO-1 partitions optimizer state only; with no optimizer every rank holds the whole model, as ddp's "
       "replicas do; use ddp, or zero3 for partitioned weights",
    2: "ZeRO-2 partitions optimizer state and gradients only; with no optimizer every rank holds the whole "
       "model, as ddp's replicas do; use ddp, or zero3 for partitioned weights",
    "offload": "ZeRO-3 inference with parameters offloaded is not wired in (on a CPU machine it is the same "
               "memory pool); use zero3",
}


def generate_config(zero: dict[str, Any], spec: RunSpec, dp: int) -> dict[str, Any]:
    """The DeepSpeed config of ZeRO-3 inference: the training config's ZeRO-3 section, no optimizer, the
    weights' dtype (bf16/fp16 weights as they are; DeepSpeed keeps no fp32 copy without an optimizer)."""
    return {
        "train_micro_batch_size_per_gpu": spec.batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": spec.batch_size * dp,
        "bf16": {"enabled": spec.dtype in ("bf16", "bf16-pure")},
        "fp16": {"enabled": spec.dtype == "fp16"},
        "zero_optimization": zero,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def zero3_inference(model: nn.Module, world: World, spec: RunSpec, config: dict[str, Any]) -> nn.Module:
    """The meta model materialized on every rank, then partitioned by ZeRO-3: the engine's module, its
    parameters 1/N each, gathered module by module in each forward."""
    import deepspeed

    from harness.models.generate import load_weights

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    model = load_weights(model, world.device, spec)  # every rank fills the same values; ZeRO keeps its part
    engine, _, _, _ = deepspeed.initialize(model=model, config=config, dist_init_required=False)
    module: nn.Module = engine.module
    module.register_forward_hook(lambda *_: engine.empty_partition_cache())  # after ZeRO's own release
    return module.eval()


def partition_bytes(model: nn.Module) -> int | None:
    """Bytes of this rank's ZeRO-3 partitions (`ds_tensor`), or None for a model ZeRO did not partition."""
    parts = [p.ds_tensor for p in model.parameters() if hasattr(p, "ds_tensor")]
    if not parts:
        return None
    return sum(t.numel() * t.element_size() for t in parts)
