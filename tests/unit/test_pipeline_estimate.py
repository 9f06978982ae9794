"""estimate of a pipeline: each pipeline rank's peak, with the micro-batches each schedule keeps in flight
(GPipe all M, 1F1B p - i on rank i, interleaved in between), the stages' state adding up to the model's, and the
per-stage table and JSON of `spacetime estimate`."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from harness.core.errors import NotModelled
from harness.core.spec import RunSpec
from harness.estimate.pipeline_memory import in_flight, predict_stages, stage_params
from harness.models.zoo import get_config
from strategies.pipeline_checks import PipelinePlan

SPEC = RunSpec(model="125m", batch_size=8, seq_len=256, device="cuda", nproc=4)


def test_in_flight_by_schedule() -> None:
    assert [in_flight("gpipe", r, 4, 1, 8) for r in range(4)] == [8] * 4
    assert [in_flight("1f1b", r, 4, 1, 8) for r in range(4)] == [4, 3, 2, 1]
    assert [in_flight("1f1b", r, 4, 1, 2) for r in range(4)] == [2, 2, 2, 1]
    interleaved = [in_flight("interleaved", r, 4, 2, 8) for r in range(4)]
    assert interleaved == [11, 9, 7, 5]  # chunks of half a stage: between 1F1B's 2(p - i) halves and GPipe's 16
    with pytest.raises(NotModelled):
        in_flight("zb", 0, 4, 2, 8)


def test_stages_hold_the_model_once() -> None:
    cfg = get_config("125m")
    stages = predict_stages(SPEC, PipelinePlan("1f1b", 4, 1, 8))
    assert sum(s.breakdown["params"] for s in stages) == pytest.approx(4 * cfg.param_count(), abs=4 * 4)
    assert [b for s in stages for b in s.blocks] == list(range(cfg.n_layers))
    assert stage_params(cfg, range(cfg.n_layers), True, True) == cfg.param_count()


def test_gpipe_holds_more_activations_than_1f1b_and_interleaved_sits_between() -> None:
    gpipe = predict_stages(SPEC, PipelinePlan("gpipe", 4, 1, 8))
    one = predict_stages(SPEC, PipelinePlan("1f1b", 4, 1, 8))
    inter = predict_stages(SPEC, PipelinePlan("interleaved", 4, 2, 8))
    for g, o, i in zip(gpipe, one, inter, strict=True):
        assert o.breakdown["activations"] <= i.breakdown["activations"] <= g.breakdown["activations"]
    # ranks 0 and 1 hold 3 blocks each (no head): 4 micro-batches in flight against 3
    assert 3 * one[0].breakdown["activations"] == pytest.approx(4 * one[1].breakdown["activations"], rel=1e-9)
    assert gpipe[0].breakdown["activations"] == pytest.approx(2 * one[0].breakdown["activations"], rel=1e-9)


def test_sharding_a_stage_divides_its_state() -> None:
    whole = predict_stages(SPEC, PipelinePlan("1f1b", 2, 1, 4))
    sharded = predict_stages(SPEC, PipelinePlan("1f1b", 2, 1, 4, shard=2))
    for w, s in zip(whole, sharded, strict=True):
        for key in ("params", "grads", "optimizer"):
            assert s.breakdown[key] == pytest.approx(w.breakdown[key] / 2, abs=2)


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
