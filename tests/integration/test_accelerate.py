"""accelerate under torchrun: its DDP matches single's loss with accumulation, and its FSDP plugin, ignored on a
CPU, is recorded as unsupported rather than as a DDP number."""

from __future__ import annotations

import pytest

from harness.run.presets import matrix
from harness.run.sweep import run_sweep
from tests.helpers import QUICK


def test_accelerate_ddp_matches_single_with_accumulation_and_the_fsdp_plugin_is_not_mislabelled() -> None:
    """accelerate's `accumulate` (no sync, no step until the last micro-batch) gives single's loss; on CPU
    accelerate wraps DDP whatever the FSDP plugin says, and the record says `unsupported`, not a number."""
    specs = matrix(("single", "accelerate_ddp", "accelerate_fsdp"), ["tiny"], 2, 4, QUICK.with_(grad_accum=2))
    got = {r.spec.strategy: r for r in run_sweep(specs, None, show_progress=False)}
    assert got["accelerate_ddp"].status == "ok", got["accelerate_ddp"].error
    assert got["accelerate_ddp"].loss == pytest.approx(got["single"].loss, rel=1e-4)
    assert got["accelerate_ddp"].optimizer_class == "torch.optim.adamw.AdamW"
    fsdp = got["accelerate_fsdp"]
    assert fsdp.status == "unsupported" and fsdp.peak_bytes is None
    assert "Accelerator.prepare returned DistributedDataParallel, not FullyShardedDataParallel" in (fsdp.error or "")
