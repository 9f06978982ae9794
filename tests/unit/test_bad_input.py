"""Each input that once crashed the command, hung it or was accepted silently and wrongly is refused before
anything is launched: exit 2 and one line naming the flag (or --model-config / --set with the config key) and
the valid values.  tests/unit/test_bad_input_property.py generates many more."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.core.limits import LIMITS
from harness.models.zoo import ZOO
from harness.run.validate import RANKS_PER_CORE, cpu_cores, lora_widths
from strategies.fsdp import divisors
from tests.bad_input_values import SMALL_CONFIG

Cli = Callable[[list[str]], tuple[int, str]]
HUGE = "9" * 400


def _config(tmp_path: Path, content: bytes | dict[str, object]) -> str:
    path = tmp_path / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return str(path)


def _refused(cli: Cli, argv: list[str], start: str, *parts: str) -> str:
    code, err = cli(argv)
    lines = err.splitlines()
    assert (code, len(lines)) == (2, 1), err
    assert lines[0].startswith("spacetime: error: " + start), lines[0]
    assert all(part in lines[0] for part in parts), lines[0]
    return lines[0]


@pytest.mark.parametrize(("argv", "start", "valid"), [
    (["sweep", "--dry-run", "--grad-accum", "0"], "--grad-accum: must be an integer >= 1", "1..16384"),
    (["sweep", "--dry-run", "--nproc", "0"], "--nproc: must be an integer >= 1", "1..1048576"),
    (["sweep", "--dry-run", "--repeat", "1000000000000"], "--repeat: must be an integer <= 1000", "1..1000"),
    (["sweep", "--dry-run", "--global-batch", str(2**34)], "--global-batch: ", "up to"),
    (["sweep", "--dry-run", "--models", "70b"], "--models: no measurable zoo model '70b'", "tiny"),
    (["sweep", "--dry-run", "--strategies", "nope"], "--strategies: unknown strategy 'nope'", "ddp"),
    (["sweep", "--dry-run", "--models", ","], "--models: names nothing", "comma-separated names"),
    (["sweep", "--dry-run", "--models", "nope", "--set", "n_layers=2"], "--models: ", "tiny"),
    (["run", "--dry-run", "--strategy", "fsdp_hybrid_shard", "--nproc", "1000000000001"],
     "--nproc: must be an integer <= 1048576", "1..1048576"),
    (["run", "--dry-run", "--timeout", "nan"], "--timeout: must be a finite number", "1..2592000"),
    (["run", "--dry-run", "--timeout", "inf"], "--timeout: must be a finite number", "1..2592000"),
    (["run", "--dry-run", "--timeout", "-1"], "--timeout: must be >= 1", "1..2592000"),
    (["run", "--dry-run", "--lr", "inf"], "--lr: must be a finite number", "> 0"),
    (["show", "--last", "-1"], "--last: must be an integer >= 1", "1.."),
    (["show", "--last", "0"], "--last: must be an integer >= 1", "1.."),
    (["run", "--dry-run", "--model=--"], "argument --model: expected one argument", ""),
    (["run", "--dry-run", "--set=--"], "argument --set: expected one argument", ""),
    (["run", "--dry-run", "--set", "n_heads=7"], "--set: tiny[n_heads=7]: hidden size 256, 7 heads", ""),
    (["run", "--dry-run", "--set", "norm_eps=nan"], "--set: norm_eps (rms_norm_eps) must be a finite number > 0", ""),
    (["run", "--dry-run", "--set", "tie_embeddings=maybe"], "--set: tie_embeddings='maybe' is not a bool",
     "true, false"),
    (["run", "--dry-run", "--nnodes", "2", "--rdzv-endpoint", "h:\u00b2"], "--rdzv-endpoint: expected HOST:PORT",
     "HOST:PORT"),
    (["estimate", "--gpu-memory", HUGE], "--gpu-memory: '99999", "from 1 MiB to 1 PiB"),
    (["estimate", "--gpu-memory", "0.0000001GiB"], "--gpu-memory: ", "from 1 MiB to 1 PiB"),
])
def test_each_found_case_is_one_line_naming_the_flag(cli: Cli, tmp_path: Path, argv: list[str], start: str,
                                                     valid: str) -> None:
    stored = ["--store", str(tmp_path / "store")] if argv[0] in ("run", "sweep") else []  # estimate stores nothing
    _refused(cli, [*argv, *stored], start, valid)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("flag", ["--seq-len", "--batch-size", "--lora-rank", "--nproc"])
def test_a_400_digit_number_is_refused_with_its_range(cli: Cli, flag: str) -> None:
    field = flag[2:].replace("-", "_")
    lo, hi = LIMITS[field]
    _refused(cli, ["estimate", "--strategy", "ddp", flag, HUGE], f"{flag}: must be an integer <= {hi}",
             "(400 digits)", f"valid: {lo}..{hi}")


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe{", "cannot read"),
    (b"[1,2,3]", "holds a JSON array, not an object"),
    (b"null", "holds a JSON null, not an object"),
    (b"42", "holds a JSON number, not an object"),
    (b"[" * 100_000, "cannot read"),
    ({**SMALL_CONFIG, "tie_word_embeddings": "false"}, "tie_embeddings (tie_word_embeddings) must be true or false"),
    ({**SMALL_CONFIG, "num_hidden_layers": True}, "n_layers (num_hidden_layers) must be an integer, got True"),
    ({**SMALL_CONFIG, "rms_norm_eps": -1}, "norm_eps (rms_norm_eps) must be a finite number > 0, got -1"),
    ({**SMALL_CONFIG, "rope_theta": "abc"}, "rope_theta must be a finite number > 0, got 'abc'"),
    ({**SMALL_CONFIG, "num_attention_heads": None}, "lacks num_attention_heads"),
    ({**SMALL_CONFIG, "hidden_size": 2**17}, "dim (hidden_size) must be an integer <= 65536"),
])
def test_a_config_that_is_not_a_llama_config_names_model_config(cli: Cli, tmp_path: Path,
                                                                 content: bytes | dict[str, object],
                                                                 message: str) -> None:
    for command in (["estimate"], ["run", "--dry-run"], ["sweep", "--dry-run"]):
        _refused(cli, [*command, "--model-config", _config(tmp_path, content)], "--model-config: ", message)


def test_a_config_past_one_mib_is_not_read_whole(cli: Cli, tmp_path: Path) -> None:
    _refused(cli, ["estimate", "--model-config", "/dev/zero"], "--model-config: ", "larger than")


def test_a_valid_small_config_still_runs(cli: Cli, tmp_path: Path) -> None:
    assert cli(["estimate", "--model-config", _config(tmp_path, SMALL_CONFIG), "--json"]) == (0, "")


def test_a_lora_rank_above_the_smallest_adapted_width_is_refused(cli: Cli) -> None:
    widths = lora_widths(ZOO["tiny"])
    width = min(widths["wq"], widths["wv"])  # the default targets, q and v
    assert width < ZOO["tiny"].dim  # tiny's grouped-query v projection is the narrower one
    _refused(cli, ["run", "--dry-run", "--lora-rank", str(width + 1)],
             f"--lora-rank: {width + 1} is above the width {width}", f"valid: 0..{width}")
    _refused(cli, ["estimate", "--lora-rank", str(width + 1)], "--lora-rank: ")
    assert cli(["estimate", "--lora-rank", str(width)])[0] in (0, 1)  # 1: peft not installed here


def test_more_ranks_than_the_cpu_takes_are_refused_for_a_measured_run_only(cli: Cli) -> None:
    most = RANKS_PER_CORE * cpu_cores()
    _refused(cli, ["run", "--dry-run", "--device", "cpu", "--strategy", "ddp", "--nproc", str(most + 1)],
             f"--nproc: {most + 1} ranks on this host's {cpu_cores()} CPU cores", f"valid: 1..{most}")
    assert cli(["run", "--dry-run", "--device", "cpu", "--strategy", "ddp", "--nproc", str(most)]) == (0, "")
    assert cli(["estimate", "--strategy", "ddp", "--nproc", str(most * 100)]) == (0, "")


@pytest.mark.parametrize("n", [*range(1, 130), 720720, 10**12 + 1])
def test_divisor_listings_are_every_divisor_in_order(n: int) -> None:
    listed = [int(d) for d in divisors(n).split(", ")]
    assert listed == sorted(set(listed)) and all(n % d == 0 for d in listed)
    assert [d * e for d, e in zip(listed, reversed(listed), strict=True)] == [n] * len(listed)  # paired
    if n < 1000:
        assert listed == [d for d in range(1, n + 1) if n % d == 0]
    assert divisors(n, 2) == ", ".join(str(d) for d in listed if d >= 2)


def test_a_sweep_dry_run_prints_each_spec_and_launches_nothing(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    from harness.cli.main import main

    assert main(["sweep", "--dry-run", "--preset", "smoke", "--strategies", "ddp,tp", "--store",
                 str(tmp_path / "store")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["status"], line["spec"]["strategy"]) for line in lines] == [("planned", "ddp"), ("planned", "tp")]
    assert not (tmp_path / "store").exists()


def test_the_docs_give_every_range() -> None:
    from harness.core.limits import FLOAT_LIMITS

    docs = Path(__file__).resolve().parents[2] / "docs"
    text = (docs / "measuring.md").read_text() + (docs / "knobs.md").read_text()
    ranges = [f"{lo}..{hi:,}" for lo, hi in LIMITS.values()] + [f"{lo:.0f}..{hi:,.0f}" for lo, hi in
                                                                 FLOAT_LIMITS.values()]
    assert [r for r in ranges if r not in text] == []
    assert f"at most {RANKS_PER_CORE} ranks per core" in text
