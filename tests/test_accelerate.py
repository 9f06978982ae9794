"""accelerate's DDP path against the single reference, and its FSDP plugin caught when accelerate swaps it."""

from __future__ import annotations

import importlib.util

import pytest
from torch import nn

from harness.spec import RunSpec, Unsupported
from harness.sweep import matrix, run_sweep
from strategies import get_strategy

BASE = RunSpec(model="tiny", seq_len=16, warmup=1, memory_steps=1, steps=2)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                                reason="accelerate is an optional extra: pip install 'spacetime[accelerate]'")


@pytest.mark.slow
def test_accelerate_ddp_matches_single_with_accumulation_and_the_fsdp_plugin_is_not_mislabelled() -> None:
    """accelerate's `accumulate` (no sync, no step until the last micro-batch) gives single's loss; on CPU
    accelerate wraps DDP whatever the FSDP plugin says, and the record says `unsupported`, not a number."""
    specs = matrix(("single", "accelerate_ddp", "accelerate_fsdp"), ["tiny"], 2, 4, BASE.with_(grad_accum=2))
    got = {r.spec.strategy: r for r in run_sweep(specs, None, show_progress=False)}
    assert got["accelerate_ddp"].status == "ok", got["accelerate_ddp"].error
    assert got["accelerate_ddp"].loss == pytest.approx(got["single"].loss, rel=1e-4)
    assert got["accelerate_ddp"].optimizer_class == "torch.optim.adamw.AdamW"
    fsdp = got["accelerate_fsdp"]
    assert fsdp.status == "unsupported" and fsdp.peak_bytes is None
    assert "Accelerator.prepare returned DistributedDataParallel, not FullyShardedDataParallel" in (fsdp.error or "")


class FullyShardedDataParallel(nn.Module):  # stands in for the real wrappers: only the class name is read
    pass


class DistributedDataParallel(nn.Module):
    pass


def test_the_wrapper_check_accepts_what_the_name_promises() -> None:
    spec = BASE.with_(nproc=2, device="cuda")
    fsdp, ddp = get_strategy("accelerate_fsdp"), get_strategy("accelerate_ddp")
    fsdp._check_wrapper(FullyShardedDataParallel(), spec)  # type: ignore[attr-defined]
    ddp._check_wrapper(DistributedDataParallel(), spec)  # type: ignore[attr-defined]
    with pytest.raises(Unsupported, match="accelerate_ddp on cuda: Accelerator.prepare returned Fully"):
        ddp._check_wrapper(FullyShardedDataParallel(), spec)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("fields", "reason"), [
    ({"quant": "nf4", "lora_rank": 8}, "accelerate's own loading path"),
    ({"dtype": "bf16-pure"}, "pure bf16 is not one of its modes"),
])
def test_what_accelerate_cannot_run_is_unsupported_with_the_reason(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(Unsupported, match=reason):
        BASE.with_(strategy="accelerate_ddp", nproc=2, **fields).validate()  # type: ignore[arg-type]
