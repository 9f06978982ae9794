"""estimate of a pipeline: each pipeline rank's peak, with the micro-batches each schedule keeps in flight
(GPipe all M, 1F1B p - i on rank i, interleaved in between), the stages' state adding up to the model's, and the
per-stage table and JSON of `spacetime estimate`."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from harness.core.errors import NotModelled
from harness.core.spec import RunSpec
from harness.estimate.pipeline_memory import _flight_by_stage, in_flight, predict_stages, stage_params
from harness.models.zoo import get_config
from strategies.pipeline_checks import PipelinePlan

SPEC = RunSpec(model="125m", batch_size=8, seq_len=256, device="cuda", nproc=4)


def test_in_flight_by_schedule() -> None:
    assert [in_flight("gpipe", r, 4, 1, 8) for r in range(4)] == [8] * 4
    assert [in_flight("1f1b", r, 4, 1, 8) for r in range(4)] == [4, 3, 2, 1]
    assert [in_flight("1f1b", r, 4, 1, 2) for r in range(4)] == [2, 2, 2, 1]
    interleaved = [in_flight("interleaved", r, 4, 2, 8) for r in range(4)]
    assert interleaved == [11, 9, 7, 5]  # chunks of half a stage: between 1F1B's 2(p - i) halves and GPipe's 16
    # zero bubble: a shorter warm-up than interleaved, but rank i's weight steps trail its input steps by i, so
    # the chunks in flight do not fall with the rank as 1F1B's do
    assert [in_flight("zb", r, 4, 2, 8) for r in range(4)] == [8] * 4
    assert [in_flight("zb", r, 4, 1, 4) for r in range(4)] == [4] * 4
    with pytest.raises(NotModelled):
        in_flight("zbv", 0, 4, 2, 8)


def test_interleaved_chunks_spread_over_local_stages_as_torch_warms_up() -> None:
    """A round of r = M // max(1, M // p) micro-batches per earlier local stage, the rest on the last one."""
    assert _flight_by_stage(3, 2, 2, 4) == [2, 1]  # the last rank of 2, 2 virtual stages, 4 micro-batches
    assert _flight_by_stage(5, 2, 2, 4) == [2, 3]
    assert _flight_by_stage(8, 2, 2, 4) == [4, 4]  # every micro-batch through both
    assert _flight_by_stage(4, 4, 1, 8) == [4]
    for rank in range(4):
        flight = in_flight("interleaved", rank, 4, 2, 8)
        assert sum(_flight_by_stage(flight, 4, 2, 8)) == flight


@pytest.mark.parametrize("micro", [4, 8])
def test_gpipe_last_stage_backward_holds_the_output_projections_gradient_being_accumulated(micro: int) -> None:
    """From a stage's second backward on, the output projection's gradient is built beside the one kept while
    every other micro-batch's chunk is still held: a temporary that does not shrink with the micro-batch."""
    spec = RunSpec(model="tiny", batch_size=8, seq_len=32, device="cpu", nproc=4)
    cfg = get_config("tiny")
    last = predict_stages(spec, PipelinePlan("gpipe", 4, 1, micro))[-1]
    assert last.phase == "backward"
    assert last.breakdown["temporaries"] >= cfg.vocab_size * cfg.dim * 4


def test_stages_hold_the_model_once() -> None:
    cfg = get_config("125m")
    stages = predict_stages(SPEC, PipelinePlan("1f1b", 4, 1, 8))
    assert sum(s.breakdown["params"] for s in stages) == pytest.approx(4 * cfg.param_count(), abs=4 * 4)
    assert [b for s in stages for b in s.blocks] == list(range(cfg.n_layers))
    assert stage_params(cfg, range(cfg.n_layers), True, True) == cfg.param_count()


def test_gpipe_peaks_above_interleaved_and_interleaved_above_1f1b() -> None:
    """125m's 12 blocks on 2 pipeline ranks (2 stages of 6, or 2 x 2 virtual stages of 3), at a length where
    activations outweigh the optimizer step."""
    long = SPEC.with_(seq_len=2048)
    gpipe = predict_stages(long, PipelinePlan("gpipe", 2, 1, 8))
    one = predict_stages(long, PipelinePlan("1f1b", 2, 1, 8))
    inter = predict_stages(long, PipelinePlan("interleaved", 2, 2, 8))
    for g, o, i in zip(gpipe, one, inter, strict=True):
        assert o.peak_bytes < i.peak_bytes < g.peak_bytes
    one = predict_stages(SPEC, PipelinePlan("1f1b", 4, 1, 8))
    # ranks 0 and 1 hold 3 blocks each (no head) in 1F1B's steady state: 4 micro-batches in flight against 3
    assert [s.phase for s in one[:2]] == ["backward", "backward"]
    first, second = (s.breakdown["activations"] for s in one[:2])
    assert 3 * first == pytest.approx(4 * second, rel=1e-9)


def test_sharding_a_stage_divides_its_state_but_not_what_a_pipeline_gathers() -> None:
    """FSDP2 in a pipeline: masters and moments sharded; the stage stays gathered and its gradients unsharded
    from the first forward to the last backward."""
    whole = predict_stages(SPEC, PipelinePlan("1f1b", 2, 1, 4))
    sharded = predict_stages(SPEC, PipelinePlan("1f1b", 2, 1, 4, shard=2))
    for w, s in zip(whole, sharded, strict=True):
        for key in ("params", "optimizer"):
            assert s.breakdown[key] == pytest.approx(w.breakdown[key] / 2, abs=2)
        assert s.phase == "backward" and s.breakdown["grads"] == pytest.approx(w.breakdown["grads"], abs=4)
        assert s.breakdown["comm"] - w.breakdown["comm"] == pytest.approx(2 * s.breakdown["params"], abs=4)


@pytest.fixture
def cli_out(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str]]:
    """`spacetime ARGS` in this process: (exit status, stdout)."""
    from harness.cli.main import main

    def run(args: list[str]) -> tuple[int, str]:
        code = main(args)
        return code, capsys.readouterr().out

    return run


def test_estimate_prints_and_writes_every_stage(cli_out: Callable[[list[str]], tuple[int, str]]) -> None:
    argv = ["estimate", "--model", "70b", "--strategy", "pp_1f1b", "--nproc", "64", "--pp", "8",
            "--batch-size", "8", "--seq-len", "4096", "--dtype", "bf16"]
    code, out = cli_out([*argv, "--json"])
    assert code == 0
    data = json.loads(out)
    assert [s["pp_rank"] for s in data["stages"]] == list(range(8))
    assert [s["in_flight"] for s in data["stages"]] == [8, 7, 6, 5, 4, 3, 2, 1]
    assert data["peak_bytes"] == max(s["peak_bytes"] for s in data["stages"])
    assert data["bubble_theory"] == pytest.approx(7 / 15)
    code, out = cli_out(argv)
    assert code == 0 and "per pipeline rank" in out and "70-79" in out
