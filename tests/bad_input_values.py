"""Hypothesis strategies for tests/unit/test_bad_input_property.py: every flag of `run`, `sweep`, `estimate` and
`simulate`, each with a mix of valid values, boundary values (each end of its range in harness/core/limits.py,
and one past it) and garbage: huge and negative numbers, nan and inf, empty and unicode text, a lone surrogate
(a non-UTF-8 byte on a command line), and for --model-config files that are not UTF-8, not JSON, JSON but not an
object, or a Hugging Face config with fields of the wrong type or range.

Each flag is a pair (valid values, any value).  About one example in three draws every flag from its valid
values, so combinations reach the strategies' own checks and the figures; the others draw from anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from harness.core.knobs import CHECKPOINTING, COMPILE, DTYPES, KV_CACHES, LOSSES, OFFLOADS, OPTIMIZERS, QUANT, WORKLOADS
from harness.core.limits import LIMITS
from harness.estimate.fit import GPUS
from harness.models.hf_config import HF_KEYS
from harness.models.zoo import ZOO
from harness.run.presets import PRESETS
from strategies import strategy_names

COMMANDS = ("run", "sweep", "estimate", "simulate")
Values = tuple[st.SearchStrategy[str], st.SearchStrategy[str]]  # (valid, any)

_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
GARBAGE = st.one_of(_TEXT, st.sampled_from([
    "", " ", "-", "--", "-1", "0", "nan", "inf", "-inf", "1e999", "None", "null", "[]", "{}", "true", "\n",
    "\udcff", "caf\u00e9", "\u65e5\u672c", "\u0663", "\u00b2", "1 2", "1_000", "0x10", "1e3", "9" * 400,
    "-" + "9" * 400, "9" * 5000]))


def _pair(valid: st.SearchStrategy[str], *bad: st.SearchStrategy[str]) -> Values:
    return valid, st.one_of(valid, *bad, GARBAGE)


def ints(field: str) -> Values:
    """An integer flag: small values in `field`'s range; else each end of the range and one past it, huge and
    negative numbers, garbage."""
    lo, hi = LIMITS[field]
    edges = [-1, 0, 1, 2, 3, 4, 8, 2**31, 2**63, 10**12 + 1, 10**400, lo - 1, lo, hi, hi + 1]
    return _pair(st.integers(lo, min(hi, lo + 16)).map(str), st.sampled_from(edges).map(str),
                 st.integers(-(2**70), 2**70).map(str))


def floats(valid: list[str]) -> Values:
    return _pair(st.sampled_from(valid), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.sampled_from(["nan", "-nan", "inf", "-inf", "1e999", "-1", "0", "1e-300", "2592001", "1e308"]))


def choices(valid: list[str] | tuple[str, ...], *bad: str) -> Values:
    return _pair(st.sampled_from(list(valid)), *([st.sampled_from(list(bad))] if bad else []))


def names(valid: list[str]) -> Values:
    """A comma-separated list of names."""
    return _pair(st.lists(st.sampled_from(valid), min_size=1, max_size=3).map(",".join),
                 st.sampled_from(["", ",", " , ", "tiny,nope"]))


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), _TEXT, st.sampled_from(
    [0, -1, 10**400, 2**21, 2**16 + 1, "false", "true", "64", "abc", 1e-5, -1.0, 0.0, 3.5]))
_JSON = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3), st.dictionaries(_TEXT, _SCALARS, max_size=3))
SMALL_CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
                "num_hidden_layers": 2, "num_key_value_heads": 2, "vocab_size": 256, "tie_word_embeddings": False,
                "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
_VALID_CHANGES: dict[str, list[Any]] = {
    "hidden_size": [32, 128], "num_hidden_layers": [1, 3], "num_key_value_heads": [1, 4], "tie_word_embeddings": [True],
    "model_type": ["mistral"], "_name_or_path": ["org/small-llama"]}
_RAW = [b"", b"\xff\xfe\x00{", b"[1,2,3]", b"null", b"42", b'"llama"', b"{", b"[" * 100_000,
        b'{"model_type": "llama", "hidden_size": 1' + b"0" * 5000 + b"}", json.dumps(SMALL_CONFIG).encode("utf-16")]


@st.composite
def config_files(draw: st.DrawFn, folder: Path, clean: bool) -> str:
    """A path for --model-config: a written config (the small one with fields changed or dropped, or raw
    bytes), or a path that is not a readable file; `clean`: the small config with valid changes only."""
    path = folder / "config.json"
    data: dict[str, Any] = dict(SMALL_CONFIG)
    kind = "config" if clean else draw(st.sampled_from(["config", "config", "raw", "path"]))
    if kind == "path":
        return draw(st.sampled_from([str(folder / "missing.json"), str(folder), "/dev/null", ""]))
    if kind == "raw":
        path.write_bytes(draw(st.sampled_from(_RAW)))
        return str(path)
    keys = list(_VALID_CHANGES) if clean else [*data, "_name_or_path"]
    for key in draw(st.lists(st.sampled_from(keys), max_size=3)):
        if clean:
            data[key] = draw(st.sampled_from(_VALID_CHANGES[key]))
        elif draw(st.booleans()):
            data[key] = draw(_JSON)
        else:
            data.pop(key, None)
    path.write_text(json.dumps(data))  # NaN and Infinity as Python's json writes and reads them
    return str(path)


_SET_KEYS = [*HF_KEYS, *HF_KEYS.values(), "name", "measurable", "depth", ""]
SETS = _pair(st.sampled_from(["n_layers=2", "num_hidden_layers=3", "n_kv_heads=2", "tie_embeddings=true",
                              "vocab_size=512", "norm_eps=1e-6", "rope_theta=500000"]),
             st.builds(lambda k, v: f"{k}={v}", st.sampled_from(_SET_KEYS),
                       st.one_of(ints("dim")[1], floats(["1"])[1], st.sampled_from(["true", "no", "maybe"]))))
_STRATEGIES = strategy_names()
_MEASURE: list[tuple[str, Values | None]] = [  # run and sweep only: no figure of estimate or simulate moves
    ("--steps", ints("steps")), ("--warmup", ints("warmup")), ("--memory-steps", ints("memory_steps")),
    ("--seed", ints("seed")), ("--lr", floats(["0.001", "1", "1e-4"])),
    ("--timeout", floats(["1", "600", "2592000"])), ("--lora-alpha", ints("lora_alpha")), ("--no-store", None),
    ("--nnodes", ints("nnodes")), ("--node-rank", ints("node_rank")),
    ("--rdzv-endpoint", choices(["localhost:29500", "[::1]:29500"], "h:0", "h:65536", ":1", "h:", "h:\u00b2",
                                "h:\u0663")), ("--rdzv-id", choices(["spacetime", "job-1"]))]
_FIGURES: list[tuple[str, Values | None]] = [  # every command's: the shape and the knobs
    ("--seq-len", ints("seq_len")), ("--device", choices(["auto", "cpu", "cuda"])), ("--tp", ints("tp")),
    ("--dp-replicate", ints("dp_replicate")), ("--pp", ints("pp")), ("--pp-virtual", ints("pp_virtual")),
    ("--pp-microbatches", ints("pp_microbatches")), ("--cp", ints("cp")), ("--dtype", choices(DTYPES)),
    ("--activation-checkpointing", choices(CHECKPOINTING)), ("--ckpt-every", ints("ckpt_every")),
    ("--lora-rank", ints("lora_rank")),
    ("--lora-targets", choices(["q,v", "all-linear", "q,k,v,o,gate,up,down", "gate"], ",", "q,x", "all")),
    ("--quant", choices(QUANT)), ("--optimizer", choices(OPTIMIZERS)), ("--grad-accum", ints("grad_accum")),
    ("--compile", choices(COMPILE, "inductor")), ("--loss", choices(LOSSES, "fused")),
    ("--loss-chunks", ints("loss_chunks")), ("--loss-parallel", None),
    ("--set", SETS)]
_SPEC = [*_FIGURES, *_MEASURE]
_GENERATE: list[tuple[str, Values | None]] = [  # run, estimate and simulate: the generate workload's shape
    ("--workload", choices(WORKLOADS, "inference")), ("--prompt-len", ints("prompt_len")),
    ("--new-tokens", ints("new_tokens")), ("--num-beams", ints("num_beams")),
    ("--kv-cache", choices(KV_CACHES, "paged")), ("--offload", choices(OFFLOADS, "nvme"))]
_ONE: list[tuple[str, Values | None]] = [
    ("--model", choices(list(ZOO))), ("--strategy", choices(_STRATEGIES)), ("--nproc", ints("nproc")),
    ("--batch-size", ints("batch_size"))]
_FIT: list[tuple[str, Values | None]] = [
    ("--gpu", choices(list(GPUS), "h100", "")),
    ("--gpu-memory", choices(["80GiB", "24GB", "1MiB", "0.5", " 16 gib ", "1048576GiB"], "0", "1e3",
                             "0.0000001GiB", "1048577GiB", "9" * 400)), ("--json", None)]
_OUTPUT: list[tuple[str, Values | None]] = [("--wide", None), ("--format", choices(["table", "csv", "json",
                                                                                    "markdown"]))]
_PROGRESS: list[tuple[str, Values | None]] = [("--progress", choices(["auto", "on", "off"], "yes", "ON")),
                                              ("--no-progress", None)]
FLAGS: dict[str, list[tuple[str, Values | None]]] = {
    "run": [*_ONE, *_SPEC, *_GENERATE, *_OUTPUT, *_PROGRESS, ("--json", None), ("--predict", None),
            ("--simulate", None)],
    "sweep": [*_SPEC, *_GENERATE, *_OUTPUT, *_PROGRESS, ("--preset", choices(list(PRESETS))),
              ("--models", names(list(ZOO))),
              ("--strategies", names(_STRATEGIES)), ("--nproc", ints("nproc")),
              ("--global-batch", ints("global_batch")), ("--repeat", ints("repeat")), ("--exact-preset", None),
              ("--fail-on-error", None), ("--predict", None), ("--simulate", None)],
    "estimate": [*_ONE, *_FIGURES, *_GENERATE, *_FIT, ("--max-batch", None), ("--max-context", None),
                 ("--inference", None)],
    "simulate": [*_ONE, *_FIGURES, *_GENERATE, *_FIT, *_PROGRESS],
}
FILE_FLAGS = {command: ("--model-config", "--store") if command in ("run", "sweep") else ("--model-config",)
              for command in COMMANDS}


@st.composite
def argv_for(draw: st.DrawFn, command: str, folder: Path) -> list[str]:
    """`command`'s flags: a few of them, as `--flag value` or `--flag=value`; a dry run for run and sweep;
    --store in `folder`."""
    table = dict(FLAGS[command])
    clean = draw(st.integers(0, 2)) == 0
    chosen = draw(st.lists(st.sampled_from([*table, *FILE_FLAGS[command]]), max_size=6))
    argv = [command, "--dry-run"] if command in ("run", "sweep") else [command]
    for flag in chosen:  # a flag drawn twice is given twice (argparse keeps the last; --set keeps each)
        values = table.get(flag)
        if flag in table and values is None:
            argv.append(flag)
            continue
        if flag == "--model-config":
            value = draw(config_files(folder, clean))
        elif flag == "--store":
            value = draw(st.sampled_from([str(folder / "store"), str(folder / "store" / "deeper"), "", "-"]))
        else:
            assert values is not None
            value = draw(values[0] if clean else values[1])
        argv += [f"{flag}={value}"] if draw(st.booleans()) else [flag, value]
    return argv
