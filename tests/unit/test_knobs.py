"""Memory knobs without a launch: validation, the presets' plans and tables, and the memory each knob must save
(simulated: the same code path as a measured run)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from harness.core.errors import SpecError, Unsupported
from harness.core.knobs import knob_label, lora_modules
from harness.core.spec import RunSpec
from harness.run.presets import plan
from harness.run.validate import validate

MIB = 1024 * 1024


@pytest.mark.parametrize(("fields", "message"), [
    ({"dtype": "fp8"}, "--dtype: unknown value 'fp8'; valid: fp32, bf16, fp16, bf16-pure"),
    ({"activation_checkpointing": "some"}, "--activation-checkpointing: unknown value 'some'; valid: off, full"),
    ({"ckpt_every": 0}, "--ckpt-every: must be an integer >= 1"),
    ({"quant": "int4"}, "--quant: unknown value 'int4'; valid: none, int8, nf4, nf4-torchao"),
    ({"optimizer": "lion"}, "--optimizer: unknown value 'lion'; valid: adamw, adamw8bit, sgd, adafactor"),
    ({"grad_accum": 0}, "--grad-accum: must be an integer >= 1"),
    ({"lora_rank": -1}, "--lora-rank: must be an integer >= 0"),
    ({"lora_alpha": 0}, "--lora-alpha: must be an integer >= 1"),
    ({"lora_rank": 8, "lora_targets": "q,x"}, "--lora-targets: unknown target(s) x; valid: a comma-separated"),
    ({"quant": "nf4"}, "--quant: nf4 base weights are frozen, so they need adapters to train: add --lora-rank"),
])
def test_bad_knobs_name_the_flag_and_the_valid_values(fields: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as raised:
        validate(RunSpec(**fields))  # type: ignore[arg-type]
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"strategy": "tp", "nproc": 2, "lora_rank": 8}, "tp with --lora-rank 8: peft's LoRA layers replace"),
    ({"strategy": "fsdp_tp", "nproc": 2, "quant": "int8", "lora_rank": 8}, "fsdp_tp with --lora-rank 8"),
    ({"strategy": "fsdp_full_shard", "nproc": 2, "quant": "int8", "lora_rank": 8},
     "fsdp_full_shard with --quant int8: bitsandbytes' Linear8bitLt reads its int8 weight's scales"),
    ({"strategy": "fsdp_hybrid_shard", "nproc": 2, "quant": "nf4-torchao", "lora_rank": 8},
     "fsdp_hybrid_shard with --quant nf4-torchao: under hybrid sharding FSDP2 hands torchao's NF4Tensor"),
    ({"strategy": "fsdp_full_shard", "nproc": 2, "optimizer": "adafactor"},
     "fsdp_full_shard with --optimizer adafactor: torch.optim.Adafactor's in-place row/column norms"),
    ({"strategy": "tp", "nproc": 2, "dtype": "fp16"}, "tp with --dtype fp16: the gradient scaler's unscale"),
    ({"strategy": "fsdp_tp", "nproc": 2, "dtype": "bf16-pure", "optimizer": "adamw8bit"},
     "fsdp_tp with --dtype bf16-pure --optimizer adamw8bit: torchao's AdamW8bit does not compile"),
    ({"strategy": "plugin_ddp", "nproc": 2, "dtype": "bf16"},
     "plugin_ddp with --dtype bf16: plugin_ddp does not apply this knob"),
])
def test_combinations_a_strategy_cannot_run_are_unsupported_with_the_reason(
        fields: dict[str, object], reason: str) -> None:
    with pytest.raises(Unsupported, match="^" + re.escape(reason)):
        validate(RunSpec(**fields))  # type: ignore[arg-type]


def test_lora_targets_map_to_the_zoo_modules() -> None:
    assert lora_modules("q,v") == ["wq", "wv"]
    assert lora_modules("all-linear") == ["wq", "wk", "wv", "wo", "w1", "w3", "w2"]


def test_knob_label_lists_what_moved_off_its_default() -> None:
    assert knob_label(RunSpec().__dict__) == "-"
    spec = RunSpec(dtype="bf16", activation_checkpointing="selective", ckpt_every=3, lora_rank=8, quant="nf4",
                   optimizer="adamw8bit", grad_accum=2)
    assert knob_label(spec.__dict__) == "bf16, ckpt 1/3, lora r8 q,v, nf4, adamw8bit, accum 2"


def test_levers_preset_adds_one_lever_per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = [knob_label(s.__dict__) for s in plan("levers", RunSpec(), exact=True, models=("tiny",))]
    assert labels == ["-", "bf16", "bf16, compile blocks", "bf16, ckpt full", "bf16, ckpt full, lora r8 q,v",
                      "bf16, ckpt full, lora r8 q,v, adamw8bit", "bf16, ckpt full, lora r8 q,v, nf4, adamw8bit"]
    monkeypatch.setattr("harness.core.host.fast_16bit_cpu", lambda: True)
    assert len(plan("levers", RunSpec(device="cpu"), models=("tiny",))) == 7


def test_on_a_cpu_without_fast_bf16_the_levers_run_in_fp32_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.run.presets import plan_note

    monkeypatch.setattr("harness.core.host.fast_16bit_cpu", lambda: False)
    specs = plan("levers", RunSpec(device="cpu"), models=("tiny",))
    assert [knob_label(s.__dict__) for s in specs] == [
        "-", "compile blocks", "ckpt full", "ckpt full, lora r8 q,v", "ckpt full, lora r8 q,v, adamw8bit",
        "ckpt full, lora r8 q,v, nf4, adamw8bit"]  # the bf16 row is the fp32 row now: run once
    note = plan_note("levers", RunSpec(device="cpu"))
    assert note is not None and "dtype fp32 in every row" in note and "--exact-preset" in note
    assert plan_note("smoke", RunSpec(device="cpu")) is None


def test_lora_ranks_preset_is_ranks_by_batches_and_flags_replace_its_values() -> None:
    specs = plan("lora-ranks", RunSpec(), exact=True, models=("tiny",))
    assert sorted({(s.lora_rank, s.batch_size) for s in specs}) == [
        (r, b) for r in (2, 4, 8) for b in (2, 4, 8, 12)]
    assert {s.quant for s in specs} == {"nf4"}
    assert {s.quant for s in plan("lora-ranks", RunSpec(quant="int8"), models=("tiny",))} == {"int8"}


def test_cli_refuses_a_bad_knob_in_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--optimizer", "lion"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "spacetime: error: --optimizer: unknown value 'lion'; valid: adamw, adamw8bit, sgd, adafactor"]


def _simulated(spec: RunSpec) -> int:
    """The peak `spacetime simulate` finds for `spec` on this CPU: the same code path as a measured run, and
    equal to its peak across the accuracy matrix (test_accuracy.py), in a quarter of the time."""
    from harness.simulate.runner import simulate

    return simulate(validate(spec.with_(device="cpu"), measure=False), "cpu").peak_bytes


def test_activation_checkpointing_lowers_peak_memory() -> None:
    """tiny at 4 x 512 tokens: activations outweigh model state, and full checkpointing keeps only each
    block's input."""
    base = RunSpec(model="tiny", batch_size=4, seq_len=512)
    off, full = (_simulated(base.with_(activation_checkpointing=m)) for m in ("off", "full"))
    assert off - full > 0.3 * off, (off / MIB, full / MIB)


def test_lora_saves_at_least_the_adamw_state_of_the_frozen_params() -> None:
    """125m, single, batch 1 x 128: LoRA r=8 (q,v) drops the gradients and both AdamW moments of every frozen
    parameter; the issue's bar is the moments alone, 8 B per frozen parameter."""
    from harness.models.zoo import get_config

    base = RunSpec(model="125m", batch_size=1, seq_len=128)
    full, lora = _simulated(base), _simulated(base.with_(lora_rank=8))
    frozen = get_config("125m").param_count()
    assert full - lora >= 8 * frozen, ((full - lora) / MIB, 8 * frozen / MIB)


def _render(table: object) -> str:
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(table)
    return console.export_text()


def test_levers_table_shows_each_change_against_the_row_before() -> None:
    from harness.report.knob_tables import levers_table

    rows = [{**RunSpec(model="125m").__dict__, "status": "ok", "peak_bytes": 1000 * MIB, "tokens_per_s": 100.0,
             "trainable_params": 10, "loss": 1.0},
            {**RunSpec(model="125m", activation_checkpointing="full").__dict__, "status": "oom", "peak_bytes": None,
             "tokens_per_s": None, "trainable_params": None, "loss": None},
            {**RunSpec(model="125m", lora_rank=8).__dict__, "status": "ok", "peak_bytes": 750 * MIB,
             "tokens_per_s": 110.0, "trainable_params": 2, "loss": 1.0}]
    text = _render(levers_table(rows))
    assert "none (fp32, full fine-tuning, AdamW)" in text and "oom" in text
    assert "-25.0%" in text and "+10.0%" in text  # the LoRA row against the last row that ran


def test_lora_ranks_table_is_rank_across_batch_down() -> None:
    from harness.report.knob_tables import lora_ranks_table

    rows = [{**RunSpec(lora_rank=r, batch_size=b).__dict__, "status": "ok" if b < 8 else "oom",
             "peak_bytes": (100 + r + b) * MIB if b < 8 else None} for b in (2, 8) for r in (2, 4)]
    lines = [line for line in _render(lora_ranks_table(rows)).splitlines() if line.strip()]
    header = next(line for line in lines if "batch \\ rank" in line)
    assert header.index("r=2") < header.index("r=4")
    assert "104.0" in next(line for line in lines if line.strip("│ ").startswith("2 "))
    assert next(line for line in lines if line.strip("│ ").startswith("8 ")).count("oom") == 2
