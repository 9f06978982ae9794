"""`simulate` of a pipeline: each pipeline rank in a fake world of its own, given its neighbours' shapes
(harness/simulate/pipeline_stand_ins.py).  Its figures against measured ones:
tests/accuracy/test_pipeline_accuracy.py."""

from __future__ import annotations

import pytest
import torch

from harness.core.spec import RunSpec
from harness.simulate.pipeline_stand_ins import boundary_dtypes, stage_shapes

TINY = RunSpec(model="tiny", batch_size=8, seq_len=32, device="cpu")


@pytest.mark.parametrize(("dtype", "fsdp", "stream", "logits"), [
    ("fp32", False, torch.float32, torch.float32),
    ("bf16", False, torch.float32, torch.bfloat16),  # autocast: the residual adds promote to fp32
    ("bf16", True, torch.bfloat16, torch.bfloat16),  # FSDP2 gathers bf16 weights
    ("bf16-pure", False, torch.bfloat16, torch.bfloat16),
])
def test_stages_pass_on_what_their_blocks_make(dtype: str, fsdp: bool, stream: torch.dtype,
                                               logits: torch.dtype) -> None:
    assert boundary_dtypes(TINY.with_(dtype=dtype), fsdp) == (stream, logits)


def test_first_stage_takes_token_ids_and_the_last_gives_logits() -> None:
    from harness.models.zoo import config_for

    cfg, rows = config_for(TINY), TINY.batch_size // 4  # a micro-batch of 4
    first_in, first_out = stage_shapes(TINY, 4, False, 0, 2)
    last_in, last_out = stage_shapes(TINY, 4, False, 1, 2)
    assert first_in.shape == (rows, TINY.seq_len) and first_in.dtype == torch.long and not first_in.requires_grad
    assert first_out.shape == last_in.shape == (rows, TINY.seq_len, cfg.dim) and last_in.requires_grad
    assert last_out.shape == (rows, TINY.seq_len, cfg.vocab_size) and last_out.requires_grad


@pytest.mark.parametrize("spec", [TINY.with_(strategy="pp_gpipe", nproc=2, dtype="bf16"),
                                  TINY.with_(strategy="fsdp_pp", nproc=4, dtype="bf16")])
def test_a_wrong_boundary_would_stop_the_simulation_and_these_run(spec: RunSpec) -> None:
    """Each stage checks what it receives and sends against the shapes it was given (torch's own validation,
    turned on under simulate), so a mixed-precision pipeline running through is the check."""
    from harness.simulate.runner import simulate

    stages = simulate(spec).stages
    assert stages is not None and len(stages) == 2


def test_a_later_world_gets_meshes_of_its_own_and_nothing_stays_patched() -> None:
    """fsdp_tp_pp's second pipeline rank (a DTensor model) gives the figure it gives simulated first."""
    import torch.distributed as dist
    from torch.distributed.pipelining import PipelineStage, schedules

    from harness.simulate.fake_run import peak_breakdown
    from harness.simulate.runner import simulate

    spec = TINY.with_(strategy="fsdp_tp_pp", nproc=4, pp_microbatches=4)
    patched = (PipelineStage.__init__, schedules._PipelineSchedule._warmup_p2p, schedules._batch_p2p)
    second_first = peak_breakdown(spec, "cpu", 2)
    stages = simulate(spec).stages
    assert stages is not None and [rank for rank, _ in stages] == [0, 2]
    assert stages[1][1] == second_first
    assert not dist.is_initialized()
    assert (PipelineStage.__init__, schedules._PipelineSchedule._warmup_p2p, schedules._batch_p2p) == patched
