"""`--help` of every command shows each option's default and a help text; `estimate` and `simulate` offer only
the flags that move their figures; `estimate` prints the shape it assumed and why each large term is there."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.cli.flags import NPROC_HELP
from harness.cli.main import build_parser, main
from harness.core.spec import RunSpec
from harness.estimate.reasons import SHARE
from harness.models.zoo import ZOO
from tests.bad_input_values import SMALL_CONFIG

# flags of a measured run that no figure of estimate or simulate depends on
RUN_ONLY = {"--steps", "--warmup", "--memory-steps", "--seed", "--lr", "--timeout", "--store", "--no-store",
            "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id", "--lora-alpha"}
# what estimate and simulate are asked for besides the spec: the fit, the output, progress lines
ASKED = {"--gpu", "--gpu-memory", "--json", "--max-batch", "--max-context", "--inference", "--progress",
         "--no-progress", "-h", "--help"}


def _parsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(command: str) -> set[str]:
    return {o for a in _parsers()[command]._actions for o in a.option_strings}


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", list(_parsers()))
def test_every_option_has_a_help_text_and_its_help_shows_the_default(command: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "10000")  # argparse wraps at hyphens (lora-ranks): compare unwrapped lines
    parser = _parsers()[command]
    shown = _flat(parser.format_help())
    for action in parser._actions:
        if not action.option_strings or action.default == argparse.SUPPRESS:
            continue
        assert action.help and action.help.strip(), f"{command} {action.option_strings[0]} has no help text"
        if action.default is None or action.default is False or "(default" in action.help:
            continue
        assert f"{_flat(action.help)} (default: {action.default})" in shown, (command, action.option_strings)


def test_seq_len_seed_and_lr_say_what_they_are_and_their_defaults() -> None:
    d = RunSpec()
    run = _flat(_parsers()["run"].format_help())
    assert f"--seq-len SEQ_LEN tokens per sequence (default: {d.seq_len})" in run
    assert re.search(rf"--seed SEED \w[^(]* \(default: {d.seed}\)", run)
    assert re.search(rf"--lr LR \w[^(]* \(default: {d.lr}\)", run)


@pytest.mark.parametrize("command", ["estimate", "simulate"])
def test_estimate_and_simulate_lack_the_flags_of_a_measured_run(command: str) -> None:
    assert RUN_ONLY <= _options("run")
    assert not _options(command) & RUN_ONLY, _options(command) & RUN_ONLY
    assert _options("simulate") - ASKED <= _options("estimate") - ASKED


def test_nproc_reads_the_same_in_every_command() -> None:
    helps = {c: next(a.help for a in _parsers()[c]._actions if "--nproc" in a.option_strings)
             for c in ("run", "sweep", "estimate", "simulate")}
    assert helps["run"] == helps["estimate"] == helps["simulate"] == NPROC_HELP
    assert helps["sweep"] is not None and helps["sweep"].startswith(NPROC_HELP)


def _estimate(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["estimate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _changes(tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """flag -> (a base spec where the flag matters, the flag with a value off its default)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SMALL_CONFIG))
    return {
        "--model": ([], ["--model", "125m"]),
        "--strategy": (["--strategy", "ddp", "--nproc", "4"], ["--strategy", "fsdp_full_shard"]),
        "--nproc": (["--strategy", "fsdp_full_shard", "--nproc", "2"], ["--nproc", "4"]),
        "--batch-size": ([], ["--batch-size", "8"]),
        "--seq-len": ([], ["--seq-len", "256"]),
        "--tp": (["--strategy", "fsdp_tp", "--nproc", "8"], ["--tp", "4"]),
        "--loss-parallel": (["--strategy", "tp", "--nproc", "2"], ["--loss-parallel"]),
        "--dp-replicate": (["--strategy", "fsdp_hybrid_shard", "--nproc", "8"], ["--dp-replicate", "4"]),
        "--pp": (["--strategy", "pp_1f1b", "--nproc", "4"], ["--pp", "2"]),
        "--pp-virtual": (["--strategy", "pp_interleaved", "--nproc", "2"], ["--pp-virtual", "1"]),
        "--pp-microbatches": (["--strategy", "pp_gpipe", "--nproc", "2"], ["--pp-microbatches", "4"]),
        "--cp": (["--strategy", "fsdp_cp", "--nproc", "8"], ["--cp", "4"]),
        "--device": ([], ["--device", "cpu"]),
        "--dtype": ([], ["--dtype", "bf16-pure"]),
        "--activation-checkpointing": ([], ["--activation-checkpointing", "full"]),
        "--ckpt-every": (["--model", "125m", "--activation-checkpointing", "selective", "--seq-len", "2048"],
                         ["--ckpt-every", "3"]),
        "--lora-rank": ([], ["--lora-rank", "8"]),
        "--lora-targets": (["--lora-rank", "8"], ["--lora-targets", "all-linear"]),
        "--quant": (["--lora-rank", "8"], ["--quant", "nf4"]),
        "--optimizer": ([], ["--optimizer", "sgd"]),
        "--grad-accum": ([], ["--grad-accum", "2"]),
        "--loss": ([], ["--loss", "chunked"]),
        "--loss-chunks": (["--loss", "chunked"], ["--loss-chunks", "2"]),
        "--model-config": ([], ["--model-config", str(config)]),
        "--set": ([], ["--set", "n_layers=8"]),
        "--workload": ([], ["--workload", "generate"]),
        "--prompt-len": (["--workload", "generate"], ["--prompt-len", "256"]),
        "--new-tokens": (["--workload", "generate"], ["--new-tokens", "64"]),
        "--num-beams": (["--workload", "generate"], ["--num-beams", "2"]),
        "--kv-cache": (["--workload", "generate"], ["--kv-cache", "dynamic"]),
        "--offload": (["--workload", "generate"], ["--offload", "cpu"]),
    }


NOT_MODELLED = {"--compile": "compile=blocks: "}  # estimate answers `not modelled: why` instead of a figure


def test_every_flag_estimate_offers_moves_its_figure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    changes = _changes(tmp_path)
    assert set(changes) == _options("estimate") - ASKED - set(NOT_MODELLED)
    for flag, (base, changed) in changes.items():
        before, after = _estimate(capsys, *base), _estimate(capsys, *base, *changed)
        assert before["breakdown"] != after["breakdown"], f"{flag} moved nothing"


@pytest.mark.parametrize("flag", sorted(NOT_MODELLED))
def test_a_flag_estimate_does_not_model_says_why(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    assert main(["estimate", flag, NOT_MODELLED[flag].split("=")[1].rstrip(": ")]) == 1
    assert capsys.readouterr().err.startswith(f"spacetime: not modelled: {NOT_MODELLED[flag]}")


def test_estimate_prints_the_shape_it_assumed(capsys: pytest.CaptureFixture[str]) -> None:
    d = RunSpec()
    assert main(["estimate"]) == 0
    out = _flat(capsys.readouterr().out)
    assert f"assumed: {d.model} ({ZOO[d.model].param_count():,} params), {d.strategy} on 1 rank" in out
    assert f"batch {d.batch_size} x seq {d.seq_len} per data-parallel rank" in out
    assert f"global batch {d.batch_size} sequences" in out
    assert f"dtype {d.dtype}, checkpointing {d.activation_checkpointing}, optimizer {d.optimizer}" in out
    assert main(["estimate", "--strategy", "fsdp_tp", "--nproc", "8", "--tp", "2", "--grad-accum", "3"]) == 0
    out = _flat(capsys.readouterr().out)
    assert "on 8 ranks = 4 data-parallel x 2 tensor-parallel" in out
    assert f"3 micro-batches per step: global batch {d.batch_size * 4 * 3} sequences" in out


def test_estimate_json_carries_the_params_and_the_shape(capsys: pytest.CaptureFixture[str]) -> None:
    out = _estimate(capsys, "--model", "7b", "--strategy", "ddp", "--nproc", "4", "--lora-rank", "16",
                    "--lora-targets", "all-linear", "--grad-accum", "2")
    assert out["params"] == out["shape"]["params"] == ZOO["7b"].param_count()
    shape = out["shape"]
    assert (shape["nproc"], shape["dp"], shape["tp"]) == (4, 4, 1)
    assert shape["global_batch"] == RunSpec().batch_size * 4 * 2
    assert shape["knobs"] | {"lora_rank": 16, "lora_targets": "all-linear", "grad_accum": 2} == shape["knobs"]
    assert {"peak_bytes", "device_bytes", "phase", "breakdown", "host_bytes"} <= set(out)


def test_the_large_terms_of_lora_over_bf16_say_why(capsys: pytest.CaptureFixture[str]) -> None:
    out = _estimate(capsys, "--model", "7b", "--lora-rank", "8", "--dtype", "bf16")
    for name, value in out["breakdown"].items():
        assert (name in out["why"]) == (value > SHARE * out["device_bytes"]), name
    assert out["why"]["params"].startswith("frozen base kept in fp32")
    assert "--dtype bf16 is mixed precision" in out["why"]["params"]
    assert "use bf16-pure for 16-bit weights" in out["why"]["params"]
    assert "checkpointing off" in out["why"]["activations"]
    pure = _estimate(capsys, "--model", "7b", "--lora-rank", "8", "--dtype", "bf16-pure")
    assert "fp32" not in pure["why"]["params"].split(",")[0]
    assert pure["breakdown"]["params"] < out["breakdown"]["params"]
    assert main(["estimate", "--model", "7b", "--lora-rank", "8", "--dtype", "bf16"]) == 0
    text = capsys.readouterr().out
    assert f"  params: {out['why']['params']}" in text.splitlines()


def test_full_fine_tuning_says_what_the_optimizer_keeps(capsys: pytest.CaptureFixture[str]) -> None:
    out = _estimate(capsys, "--model", "7b", "--strategy", "fsdp_full_shard", "--nproc", "8")
    assert out["why"]["optimizer"].startswith("AdamW keeps 2 fp32 states per trainable parameter")
    assert "sharded over 8 ranks" in out["why"]["optimizer"]
