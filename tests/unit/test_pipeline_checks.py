"""Pipeline specs: bad input refused before launch (exit 2, one line naming the flag and the valid values), the
layout and defaults each pipeline strategy resolves, how blocks and stages are cut, and the theoretical bubble."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.core.errors import SpecError, Unsupported
from harness.core.spec import RunSpec
from harness.run.validate import validate
from strategies import get_strategy
from strategies.pipeline_checks import bubble_theory

Cli = Callable[[list[str]], tuple[int, str]]
RUN = ["run", "--dry-run", "--model", "tiny", "--device", "cpu"]


@pytest.mark.parametrize(("argv", "start", "valid"), [
    (["--strategy", "pp_gpipe", "--nproc", "4", "--pp", "3"], "--pp: 3 pipeline stages", "1, 2, 4"),
    (["--strategy", "pp_interleaved", "--nproc", "4", "--pp", "4"], "--pp: tiny has 4 blocks, fewer than 4 "
     "stages x 2 virtual", "pp x pp_virtual <= 4"),
    (["--strategy", "pp_gpipe", "--nproc", "2", "--pp-microbatches", "3"], "--pp-microbatches: 3 micro-batches "
     "do not divide the per-rank batch of 4", "1, 2, 4"),
    (["--strategy", "pp_1f1b", "--nproc", "4", "--pp-microbatches", "2"], "--pp-microbatches: pp_1f1b needs at "
     "least as many micro-batches as pipeline ranks (4), got 2", ">= 4"),
    (["--strategy", "fsdp_full_shard", "--nproc", "2", "--pp", "2"], "--pp: fsdp_full_shard does not pipeline",
     "0 (or a pp_* / *_pp strategy)"),
    (["--strategy", "ddp", "--nproc", "2", "--pp-microbatches", "2"], "--pp-microbatches: ddp does not pipeline",
     ""),
    (["--strategy", "pp_1f1b", "--nproc", "2", "--pp-virtual", "2"], "--pp-virtual: pp_1f1b runs one stage per "
     "rank, got 2", "0 or 1"),
    (["--strategy", "pp_gpipe", "--nproc", "2", "--pp", "-1"], "--pp: must be an integer >= 0", "0..1048576"),
    (["--strategy", "pp_gpipe", "--nproc", "2", "--tp", "2"], "--tp: pp_gpipe has no tensor parallelism",
     "0 (or fsdp_tp_pp)"),
    (["--strategy", "fsdp_tp_pp", "--nproc", "8", "--pp", "2", "--tp", "3"], "--tp: 3 does not divide 8 ranks",
     "1, 2, 4, 8"),
    (["--strategy", "fsdp_tp_pp", "--nproc", "8", "--pp", "3", "--tp", "2"], "--pp: 3 pipeline stages x 2 rank(s) "
     "each do not divide 8 ranks", "1, 2, 4"),
    (["--strategy", "fsdp_tp_pp", "--nproc", "6", "--pp", "2", "--tp", "3"], "--tp: tp degree 3 does not divide "
     "tiny's 8 heads and 4 kv heads", ""),
])
def test_bad_pipeline_input_is_refused_in_one_line(cli: Cli, argv: list[str], start: str, valid: str) -> None:
    code, err = cli([*RUN, *argv])
    lines = err.splitlines()
    assert (code, len(lines)) == (2, 1), err
    assert lines[0].startswith("spacetime: error: " + start), lines[0]
    assert valid in lines[0], lines[0]


def test_tied_embeddings_across_stages_are_unsupported() -> None:
    with pytest.raises(Unsupported, match="ties its output projection"):
        validate(RunSpec(model="1b", strategy="pp_gpipe", nproc=2, device="cpu"), measure=False)


@pytest.mark.parametrize(("name", "nproc", "pp", "dp", "virtual", "micro"), [
    ("pp_gpipe", 4, 4, 1, 1, 4), ("pp_1f1b", 2, 2, 1, 1, 2), ("pp_interleaved", 2, 2, 1, 2, 2),
    ("pp_zb", 2, 2, 1, 2, 2), ("fsdp_pp", 4, 2, 2, 1, 2), ("fsdp_tp_pp", 4, 2, 1, 1, 2),
])
def test_defaults_resolve_a_layout(name: str, nproc: int, pp: int, dp: int, virtual: int, micro: int) -> None:
    spec = validate(RunSpec(model="tiny", strategy=name, nproc=nproc, device="cpu"))
    strategy = get_strategy(name)
    layout = strategy.layout(spec)
    assert (layout.pp, layout.dp, layout.tp) == (pp, dp, 2 if name == "fsdp_tp_pp" else 1)
    assert (strategy.virtual(spec), strategy.microbatches(spec)) == (virtual, micro)  # type: ignore[attr-defined]
    assert strategy.pipelines


def test_the_default_pipeline_fits_the_models_blocks() -> None:
    """tiny's 4 blocks take 4 stages of one block, or 2 ranks x 2 virtual stages on 4 ranks."""
    spec = validate(RunSpec(model="tiny", strategy="pp_interleaved", nproc=4, device="cpu"))
    assert get_strategy("pp_interleaved").layout(spec).pp == 2
    spec = validate(RunSpec(model="tiny", strategy="pp_gpipe", nproc=8, device="cpu"))
    assert get_strategy("pp_gpipe").layout(spec).pp == 4


def test_pp_below_the_world_replicates_stages() -> None:
    spec = validate(RunSpec(model="tiny", strategy="pp_gpipe", nproc=4, pp=2, device="cpu"))
    layout = get_strategy("pp_gpipe").layout(spec)
    assert (layout.pp, layout.dp_shard) == (2, 2)


def test_every_pipeline_knob_outside_the_applied_ones_is_unsupported() -> None:
    with pytest.raises(Unsupported, match="--pp-microbatches"):
        validate(RunSpec(model="tiny", strategy="pp_1f1b", nproc=2, grad_accum=2, device="cpu"))
    with pytest.raises(SpecError):
        validate(RunSpec(model="tiny", strategy="pp_gpipe", nproc=2, batch_size=3, device="cpu"))


def test_blocks_are_cut_evenly_earlier_stages_taking_the_remainder() -> None:
    from harness.models.pipeline_split import stage_blocks, stages_of_rank

    assert stage_blocks(4, 4) == [range(0, 1), range(1, 2), range(2, 3), range(3, 4)]
    assert stage_blocks(7, 3) == [range(0, 3), range(3, 5), range(5, 7)]
    assert stages_of_rank(1, 2, 2) == [1, 3]
    assert stages_of_rank(0, 2, 2, "v") == [0, 3]


def test_stages_keep_canonical_names_and_together_hold_the_model() -> None:
    from harness.models.llama import build_model
    from harness.models.zoo import get_config
    from harness.train.pipeline_stages import split_model

    names: list[str] = []
    for rank in range(2):
        for index, stage in split_model(build_model(get_config("tiny"), 32), 2, 2, rank):
            own = [n for n, _ in stage.named_parameters()]
            assert (any(n.startswith("tok_embeddings") for n in own), any(n.startswith("output") for n in own)) \
                == (index == 0, index == 3)
            names += own
    whole = [n for n, _ in build_model(get_config("tiny"), 32).named_parameters()]
    assert sorted(names) == sorted(whole)


@pytest.mark.parametrize(("schedule", "pp", "virtual", "micro", "expected"), [
    ("gpipe", 4, 1, 4, 3 / 7), ("1f1b", 4, 1, 16, 3 / 19), ("interleaved", 4, 2, 4, 3 / 11), ("gpipe", 1, 1, 4, 0.0),
])
def test_bubble_theory(schedule: str, pp: int, virtual: int, micro: int, expected: float) -> None:
    assert bubble_theory(schedule, pp, virtual, micro) == pytest.approx(expected)


def test_zero_bubble_has_no_closed_form() -> None:
    assert bubble_theory("zb", 4, 2, 8) is None


def test_simulate_gives_each_pipeline_ranks_peak_as_a_record_does(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from harness.cli.main import main

    assert main(["simulate", "--model", "tiny", "--strategy", "pp_1f1b", "--nproc", "4", "--pp", "2",
                 "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    first, last = out["stage_peak_bytes"]  # the last stage holds the output projection and the logits
    assert out["mesh_pp"] == 2 and last > first and out["peak_bytes"] == last
    assert out["peak_bytes_per_rank"] == [first, first, last, last]  # ranks pp-major: a stage's replicas
    assert [(s["pp_rank"], s["rank"]) for s in out["stages"]] == [(0, 0), (1, 2)]
    assert out["breakdown"] == out["stages"][1]["breakdown"]


def test_simulate_refuses_no_pipeline_strategy() -> None:
    from strategies import list_strategies

    pipelines = [s for s in list_strategies() if getattr(s, "pipelines", False)]
    assert {s.name for s in pipelines} >= {"pp_gpipe", "pp_1f1b", "pp_interleaved", "pp_zb", "fsdp_pp", "fsdp_tp_pp"}
    assert all(s.simulate_why_not is None for s in pipelines)


def test_the_model_parallel_preset_plans_every_layout_on_one_global_batch() -> None:
    from harness.run.presets import MODEL_PARALLEL, plan

    specs = plan("model-parallel", RunSpec())
    assert [s.strategy for s in specs] == list(MODEL_PARALLEL)
    for spec in specs:
        valid = validate(spec.with_(device="cpu"))
        assert valid.nproc == 4
        assert valid.batch_size * get_strategy(spec.strategy).layout(valid).dp == 8


def test_the_bubble_preset_runs_gpipe_at_p_2p_and_4p_micro_batches_on_one_batch() -> None:
    from harness.run.presets import plan

    specs = [validate(s.with_(device="cpu")) for s in plan("pipeline-bubble", RunSpec())]
    assert [s.pp_microbatches for s in specs] == [2, 4, 8]  # m = p, 2p, 4p with p = 2 stages
    assert {(s.strategy, s.nproc, s.batch_size) for s in specs} == {("pp_gpipe", 2, 16)}
