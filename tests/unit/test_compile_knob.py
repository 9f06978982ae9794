"""--compile before anything runs: its values and checks, which strategies apply it and which refuse it with the
reason, estimate's and simulate's `not modelled`, and the compiled blocks' parameter names."""

from __future__ import annotations

import pytest

from harness.core.errors import NotModelled, SpecError, Unsupported
from harness.core.knobs import COMPILE, knob_label, moved_knobs, validate
from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run.annotate import predicted_peak
from strategies import get_strategy

APPLY = ("single", "ddp", "fsdp_full_shard", "fsdp_shard_grad_op", "fsdp_hybrid_shard", "fsdp_offload")
REFUSE = ("fsdp1_full_shard", "zero2", "zero3", "accelerate_ddp", "accelerate_fsdp", "tp", "fsdp_tp", "pp_gpipe")


def test_a_bad_value_names_the_flag_and_the_valid_values() -> None:
    with pytest.raises(SpecError, match="--compile: unknown value 'fast'; valid: off, blocks, model"):
        validate(RunSpec(compile="fast"))


def test_generation_refuses_compile() -> None:
    with pytest.raises(SpecError, match="--compile: blocks: generation runs eager"):
        validate(RunSpec(compile="blocks", workload="generate"))


@pytest.mark.parametrize("mode", COMPILE[1:])
def test_compile_is_a_moved_knob_with_a_label(mode: str) -> None:
    assert moved_knobs(RunSpec(compile=mode)) == {"compile": mode}
    assert knob_label(RunSpec(compile=mode, dtype="bf16")) == f"bf16, compile {mode}"
    assert RunSpec.from_json(RunSpec(compile=mode).to_json()).compile == mode


@pytest.mark.parametrize("name", APPLY)
def test_data_parallel_strategies_apply_compile(name: str) -> None:
    strategy = get_strategy(name)
    assert "compile" in strategy.knobs
    strategy.check_knobs(RunSpec(strategy=name, nproc=1 if name == "single" else 4, compile="blocks"))


@pytest.mark.parametrize("name", REFUSE)
def test_other_strategies_refuse_compile_with_the_reason(name: str) -> None:
    with pytest.raises(Unsupported, match=f"^{name} with --compile model: ."):
        get_strategy(name).check_knobs(RunSpec(strategy=name, nproc=4, compile="model"))


@pytest.mark.parametrize("mode", COMPILE[1:])
def test_estimate_says_not_modelled_with_the_reason(mode: str) -> None:
    with pytest.raises(NotModelled, match=f"^compile={mode}: Inductor's partitioner picks"):
        predicted_peak(Record(RunSpec(compile=mode, device="cpu"), "ok"), strict=True)
    assert predicted_peak(Record(RunSpec(compile=mode, device="cpu"), "ok")) is None
    assert predicted_peak(Record(RunSpec(device="cpu"), "ok"))  # uncompiled: a figure


def test_simulate_says_not_modelled_before_building_anything() -> None:
    from harness.simulate.runner import check_simulable

    with pytest.raises(NotModelled, match="^compile=blocks: Inductor's compiled kernels need real storage"):
        check_simulable(RunSpec(compile="blocks"))
    check_simulable(RunSpec())


def test_compiled_blocks_keep_their_canonical_parameter_names() -> None:
    from torch._dynamo.eval_frame import OptimizedModule

    from harness.models.compile import apply_compile
    from harness.models.llama import build_model
    from harness.models.materialize import canonical_name
    from harness.models.zoo import ZOO

    eager = build_model(ZOO["tiny"], 16)
    names = [n for n, _ in eager.named_parameters()]
    blocks = apply_compile(build_model(ZOO["tiny"], 16), RunSpec(compile="blocks"))
    assert all(isinstance(b, OptimizedModule) for b in blocks.layers)  # type: ignore[union-attr]
    whole = apply_compile(build_model(ZOO["tiny"], 16), RunSpec(compile="model"))
    assert isinstance(whole, OptimizedModule)
    for model in (blocks, whole):
        assert [canonical_name(n) for n, _ in model.named_parameters()] == names
    assert apply_compile(eager, RunSpec()) is eager
