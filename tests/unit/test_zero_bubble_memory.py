"""estimate of torch's interleaved zero-bubble schedule (ZB1P): the actions each pipeline rank runs, in torch's
own order, and the memory walked along them (harness/estimate/zero_bubble_memory.py)."""

from __future__ import annotations

import pytest

from harness.core.spec import RunSpec
from harness.estimate.pipeline_memory import predict_stages
from harness.estimate.zero_bubble_memory import ZbStage, zb_actions, zb_phases
from strategies.pipeline_checks import PipelinePlan

SHAPES = [(pp, v, m) for pp in (1, 2, 4) for v in (1, 2, 3) for m in (1, 2, 4, 6, 8) if m <= pp or m % (m // pp) == 0]


def _torch_order(rank: int, pp: int, virtual: int, micro: int) -> list[tuple[str, int, int]]:
    """The actions torch's ScheduleInterleavedZeroBubble lays out for `rank` (its own per-rank calculation, on an
    instance without stages), the bubbles left out."""
    from torch.distributed.pipelining.schedules import ScheduleInterleavedZeroBubble, _ComputationType

    kinds = {_ComputationType.FORWARD: "F", _ComputationType.BACKWARD_INPUT: "I",
             _ComputationType.BACKWARD_WEIGHT: "W"}
    schedule = object.__new__(ScheduleInterleavedZeroBubble)
    schedule.pp_group_size, schedule.n_local_stages, schedule._n_microbatches = pp, virtual, micro
    schedule.number_of_rounds = max(1, micro // pp)
    schedule.microbatches_per_round = micro // schedule.number_of_rounds
    return [(kinds[a.computation_type], a.stage_index, int(a.microbatch_index or 0))
            for a in schedule._calculate_single_rank_operations(rank) if a is not None]


@pytest.mark.parametrize(("pp", "virtual", "micro"), SHAPES)
def test_actions_follow_torchs_order(pp: int, virtual: int, micro: int) -> None:
    for rank in range(pp):
        assert zb_actions(rank, pp, virtual, micro) == _torch_order(rank, pp, virtual, micro)


def _walk(actions: list[tuple[str, int, int]], stage: ZbStage, index: int) -> dict[tuple[str, int], dict[str, float]]:
    """The phases by (action's kind, micro-batch)."""
    names = {"forward": "F", "input": "I", "weight": "W"}
    return {(names[name.split()[2]], int(name.split()[-1].rstrip(")"))): figures
            for name, figures in zb_phases(actions, {index: stage}).items()}


def test_a_chunk_stays_whole_from_its_forward_until_its_weight_step() -> None:
    """One stage, two micro-batches: I adds the intermediates' gradients beside the chunk; W frees both."""
    stage = ZbStage(chunk=100.0, kept=10.0, freed=0.0, grads=1000.0, input_peak=15.0, weight_peak=7.0, left=1.0,
                    first=False)
    actions = [("F", 1, 0), ("F", 1, 1), ("I", 1, 0), ("W", 1, 0), ("I", 1, 1), ("W", 1, 1)]
    phases = _walk(actions, stage, 1)
    assert (phases["I", 0]["activations"], phases["I", 0]["temporaries"]) == (200.0, 15.0)
    # the first W builds the gradients, its intermediates' gradients still held as the chunk goes
    assert phases["W", 0] == {"grads": 1000.0, "activations": 100.0, "temporaries": 10.0, "comm": 0.0}
    assert phases["I", 1]["activations"] == 100.0  # the first micro-batch's chunk and gradients are gone
    assert phases["W", 1] == {"grads": 1000.0, "activations": 110.0, "temporaries": 7.0, "comm": 1.0}


def test_the_first_stage_has_no_input_step() -> None:
    stage = ZbStage(chunk=100.0, kept=0.0, freed=0.0, grads=1000.0, input_peak=0.0, weight_peak=5.0, left=1.0,
                    first=True)
    phases = _walk([("F", 0, 0), ("I", 0, 0), ("W", 0, 0)], stage, 0)
    assert ("I", 0) not in phases and phases["W", 0]["activations"] == 0.0


def test_pp_zb_peaks_at_a_backward_step_with_more_in_flight_than_1f1b_on_the_last_rank() -> None:
    spec = RunSpec(model="tiny", batch_size=8, seq_len=32, device="cpu", nproc=4, strategy="pp_zb")
    zb = predict_stages(spec, PipelinePlan("zb", 4, 1, 4))
    one = predict_stages(spec, PipelinePlan("1f1b", 4, 1, 4))
    assert zb[-1].in_flight > one[-1].in_flight
    assert zb[-1].peak_bytes > one[-1].peak_bytes
    assert all(s.phase.split()[2] in ("input", "weight") for s in zb[1:])
