"""DeepSpeed ZeRO under torchrun: each stage's loss equals single's, stage 3 partitions parameters, and the
engine applies the knobs as the other strategies do."""

from __future__ import annotations

import pytest

from harness.core.record import Record
from harness.run.presets import matrix
from harness.run.sweep import run_sweep
from tests.helpers import QUICK, needs

STAGES = ("zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")


@pytest.fixture(scope="module")
def runs() -> dict[str, Record]:
    specs = matrix(("single", *STAGES), ["tiny"], 2, 4, QUICK)
    return {r.spec.strategy: r for r in run_sweep(specs, None, show_progress=False)}


@needs("deepspeed")
@pytest.mark.parametrize("name", STAGES)
def test_zero_loss_matches_single(runs: dict[str, Record], name: str) -> None:
    assert runs[name].status == "ok", runs[name].error
    assert runs[name].loss == pytest.approx(runs["single"].loss, rel=1e-4)
    offload = "offload" in name  # ZeRO-Offload steps with DeepSpeed's CPU Adam; on CPU the others with torch's
    assert runs[name].optimizer_class == ("deepspeed.ops.adam.cpu_adam.DeepSpeedCPUAdam" if offload
                                          else "torch.optim.adamw.AdamW")


@needs("deepspeed")
def test_zero3_partitions_parameters_and_zero1_does_not(runs: dict[str, Record]) -> None:
    whole = runs["single"].param_bytes_per_rank
    zero1, zero3 = runs["zero1"].param_bytes_per_rank, runs["zero3"].param_bytes_per_rank
    assert whole is not None and zero1 is not None and zero3 is not None
    assert zero1 == [whole[0]] * 2
    assert sum(zero3) == pytest.approx(whole[0], rel=0.01) and max(zero3) < 0.6 * whole[0]
    assert runs["zero3"].trainable_params == runs["single"].trainable_params  # counted whole, not the partition


@needs("deepspeed")
def test_zero_applies_the_knobs_like_single() -> None:
    """The engine's own accumulation (it scales the loss by 1/grad_accum and steps at the boundary),
    checkpointing and LoRA adapters under ZeRO-2 and ZeRO-3 give single's loss."""
    knobs = QUICK.with_(grad_accum=2, activation_checkpointing="full", lora_rank=4, lora_targets="all-linear")
    specs = matrix(("single", "zero2", "zero3"), ["tiny"], 2, 4, knobs)
    got = {r.spec.strategy: r for r in run_sweep(specs, None, show_progress=False)}
    for name in ("zero2", "zero3"):
        assert got[name].status == "ok", got[name].error
        assert got[name].loss == pytest.approx(got["single"].loss, rel=1e-4)
        assert got[name].trainable_params == got["single"].trainable_params
