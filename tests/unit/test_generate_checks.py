"""The generate workload's bad input is refused before anything launches: exit 2 and one line naming the flag
and the valid values; a strategy without generation, and --offload cpu on a CPU-only run, are `unsupported`
with the reason."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.core.errors import SpecError, Unsupported
from harness.core.limits import LIMITS
from harness.core.spec import RunSpec
from harness.run.validate import validate
from strategies import get_strategy, strategy_names

Cli = Callable[[list[str]], tuple[int, str]]
GEN = ["run", "--workload", "generate", "--no-store"]
ROWS = LIMITS["batch_size"][1]
LONGEST = LIMITS["seq_len"][1]


@pytest.mark.parametrize(("flags", "start", "valid"), [
    (["--new-tokens", "0"], "--new-tokens: must be an integer >= 1", f"1..{LIMITS['new_tokens'][1]}"),
    (["--prompt-len", str(LONGEST), "--new-tokens", "4"], "--new-tokens: prompt", "1..1"),
    (["--prompt-len", "16", "--new-tokens", str(LONGEST)], "--new-tokens: prompt 16", f"1..{LONGEST - 16}"),
    (["--batch-size", "4", "--num-beams", str(ROWS)], "--num-beams: batch 4 x", f"1..{ROWS // 4}"),
    (["--num-beams", str(ROWS + 1)], "--num-beams: must be an integer <=", f"1..{ROWS}"),
    (["--lora-rank", "4"], "--lora-rank: trains only", "0 (the default) with --workload generate"),
    (["--optimizer", "sgd"], "--optimizer: trains only", "adamw (the default) with --workload generate"),
    (["--grad-accum", "2"], "--grad-accum: trains only", "1 (the default) with --workload generate"),
    (["--activation-checkpointing", "full"], "--activation-checkpointing: trains only",
     "off (the default) with --workload generate"),
    (["--kv-cache", "paged"], "--kv-cache: unknown value 'paged'", "static, dynamic"),
    (["--offload", "nvme"], "--offload: unknown value 'nvme'", "none, cpu, disk"),
])
def test_bad_generate_input_is_one_line_and_exit_2(cli: Cli, flags: list[str], start: str, valid: str) -> None:
    code, err = cli([*GEN, *flags])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"spacetime: error: {start}") and lines[0].endswith(f"valid: {valid}"), err


@pytest.mark.parametrize(("flags", "field"), [(["--num-beams", "2"], "num_beams"),
                                              (["--new-tokens", "8"], "new_tokens"),
                                              (["--kv-cache", "dynamic"], "kv_cache"),
                                              (["--offload", "disk"], "offload")])
def test_generate_flags_with_the_train_workload_are_refused(cli: Cli, flags: list[str], field: str) -> None:
    code, err = cli(["run", "--no-store", *flags])
    flag = "--" + field.replace("_", "-")
    assert code == 2 and err.strip().startswith(f"spacetime: error: {flag}: applies to --workload generate only")


def test_a_strategy_without_generation_is_unsupported_with_its_reason() -> None:
    without = [n for n in strategy_names() if not get_strategy(n).generates and n in ("fsdp_tp", "zero1", "zero2",
                                                                                       "zero3_offload")]
    assert without
    for name in without:
        spec = RunSpec(workload="generate", strategy=name, nproc=2, device="cpu")
        with pytest.raises(Unsupported, match=f"^{name} with --workload generate: "):
            validate(spec)


@pytest.mark.parametrize("name", ["single", "ddp", "fsdp_full_shard", "tp", "zero3"])
def test_the_generating_strategies_pass(name: str) -> None:
    nproc = 1 if name == "single" else 2
    spec = validate(RunSpec(workload="generate", strategy=name, nproc=nproc, device="cpu", dtype="bf16"))
    assert get_strategy(spec.strategy).generates


def test_offload_cpu_on_a_cpu_run_is_unsupported_but_estimate_takes_it() -> None:
    spec = RunSpec(workload="generate", offload="cpu", device="cpu")
    with pytest.raises(Unsupported, match="^--offload cpu on a CPU-only run: the weights already live in host"):
        validate(spec)
    assert validate(spec.with_(device="cuda"), measure=False).offload == "cpu"


def test_offload_runs_measured_on_disk_under_single_only() -> None:
    with pytest.raises(Unsupported, match="^--offload cpu: a measured run offloads to disk only"):
        validate(RunSpec(workload="generate", offload="cpu", device="cuda"), planned=True)
    with pytest.raises(Unsupported, match="^--offload disk runs under single only"):
        validate(RunSpec(workload="generate", offload="disk", strategy="ddp", nproc=2, device="cpu"))
    assert validate(RunSpec(workload="generate", offload="disk", device="cpu")).offload == "disk"


def test_quantized_generation_needs_no_adapters() -> None:
    with pytest.raises(SpecError, match="--quant"):
        validate(RunSpec(quant="nf4", device="cpu"))  # training a frozen base needs adapters
    assert validate(RunSpec(workload="generate", quant="nf4"), measure=False).quant == "nf4"


def test_the_inference_preset_plans_every_dtype_and_quantization_of_generation() -> None:
    from harness.run.presets import plan

    specs = plan("inference", RunSpec(device="cpu"))
    assert [(s.dtype, s.quant) for s in specs] == [("fp32", "none"), ("bf16", "none"), ("fp16", "none"),
                                                   ("fp32", "int8"), ("fp32", "nf4"), ("fp32", "int8-torchao"),
                                                   ("fp32", "nf4-torchao"), ("bf16", "int4-torchao")]
    for spec in specs:
        assert (spec.workload, spec.strategy, spec.model, spec.batch_size) == ("generate", "single", "1b", 1)
        if spec.quant == "int4-torchao":  # no CPU layout: a row with the reason here, measured on CUDA
            with pytest.raises(Unsupported, match="^--quant int4-torchao on the CPU"):
                validate(spec)
            continue
        assert validate(spec) == spec
