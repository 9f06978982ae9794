"""`estimate`, `zoo`, `strategies`, `show` and every `--help` import no torch, DeepSpeed, peft, accelerate,
bitsandbytes, torchao or transformers, and still answer right.

Each command runs in a fresh process through a small driver: it calls `harness.cli.main.main(argv)` and then
writes, as the last line on stderr, the exit status and the heavy packages found in `sys.modules`.  The
commands run as an installation without plugins has them (the test plugins, which import torch themselves,
are left off the path); the figures are checked against the same functions called here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from harness.cli.listings import has_memory_model
from harness.cli.main import build_parser
from harness.core.spec import RunSpec
from harness.core.units import GIB
from harness.estimate.assumed import assumed_shape
from harness.estimate.fit import fits_json, inference_bytes, max_batch, memory_limit, profile_for
from harness.estimate.predict import predict
from harness.estimate.reasons import reasons
from harness.models.zoo import ZOO, config_for
from harness.run.validate import validate
from strategies import BUILTINS, get_strategy

HEAVY = ("torch", "deepspeed", "peft", "accelerate", "bitsandbytes", "torchao", "transformers")
DRIVER = f"""
import json, sys
from harness.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
sys.stdout.flush()
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
print(json.dumps({{"exit": code, "heavy": heavy}}), file=sys.stderr)
"""
PLUGINS = Path(__file__).parents[1] / "plugins"


def light(*argv: str) -> tuple[int, str]:
    """`spacetime ARGV` in a fresh process, its tables 250 columns wide: (exit status, stdout), after asserting
    that no heavy package was loaded."""
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != PLUGINS]
    proc = subprocess.run([sys.executable, "-c", DRIVER, *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(path), "COLUMNS": "250"})
    assert proc.stderr.strip(), proc.stdout
    last = json.loads(proc.stderr.strip().splitlines()[-1])
    assert last["heavy"] == [], f"spacetime {' '.join(argv)} imported {last['heavy']}"
    return last["exit"], proc.stdout


def table_rows(out: str, names: Iterable[str]) -> dict[str, list[str]]:
    """The words of each table row that starts with one of `names`, by name, whatever the table's borders."""
    words = (line.replace("│", " ").split() for line in out.splitlines())
    return {row[0]: row for row in words if row and row[0] in set(names)}


def expected_estimate(fields: dict[str, Any], gpu: str | None = None, gpu_memory: str | None = None,
                      batch: bool = False, inference: bool = False) -> dict[str, Any]:
    """What `estimate --json` must print, from predict() and the fit functions called here."""
    spec = validate(RunSpec(**{"device": "cuda", **fields}), measure=False)
    profile = profile_for(spec)
    prediction = predict(spec, profile, spec.device)
    out = prediction.to_json() | {"params": config_for(spec).param_count(), "shape": assumed_shape(spec),
                                  "why": reasons(spec, prediction, profile)}
    limit = memory_limit(gpu, gpu_memory)
    if limit:
        out["fits"] = fits_json(limit, prediction.device_bytes)
    if batch and limit:
        out["max_batch"] = max_batch(spec, limit[1])
    if inference:
        out["inference_bytes"] = inference_bytes(spec)
    return out


# (flags, spec fields): one per family of strategies, and the knobs whose packages are heavy
ESTIMATES: list[tuple[list[str], dict[str, Any]]] = [
    ([], {"model": "70b", "strategy": "fsdp_full_shard", "nproc": 8}),
    (["--dtype", "bf16"], {"model": "7b", "strategy": "zero3", "nproc": 8, "dtype": "bf16"}),
    (["--tp", "2"], {"model": "7b", "strategy": "fsdp_tp", "nproc": 8, "tp": 2}),
    ([], {"model": "7b", "strategy": "fsdp1_full_shard", "nproc": 4}),
    ([], {"model": "7b", "strategy": "accelerate_ddp", "nproc": 2}),
    (["--lora-rank", "8", "--quant", "nf4", "--optimizer", "adamw8bit"],
     {"model": "7b", "strategy": "single", "nproc": 1, "lora_rank": 8, "quant": "nf4", "optimizer": "adamw8bit"}),
]


@pytest.mark.parametrize(("flags", "fields"), ESTIMATES, ids=[f["strategy"] for _, f in ESTIMATES])
def test_estimate_json_is_predict_of_the_same_spec(flags: list[str], fields: dict[str, Any]) -> None:
    code, out = light("estimate", "--model", fields["model"], "--strategy", fields["strategy"],
                      "--nproc", str(fields["nproc"]), *flags, "--json")
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1]) == expected_estimate(fields)


def test_estimate_with_a_gpu_the_largest_batch_and_inference() -> None:
    fields = {"model": "70b", "strategy": "fsdp_full_shard", "nproc": 8}
    code, out = light("estimate", "--model", "70b", "--strategy", "fsdp_full_shard", "--nproc", "8",
                      "--gpu", "H100-80GB", "--max-batch", "--inference", "--json")
    assert code == 0
    want = expected_estimate(fields, gpu="H100-80GB", batch=True, inference=True)
    assert json.loads(out.strip().splitlines()[-1]) == want
    code, out = light("estimate", "--model", "70b", "--strategy", "fsdp_full_shard", "--nproc", "8",
                      "--gpu-memory", "24GB", "--max-batch", "--json")
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1]) == expected_estimate(fields, gpu_memory="24GB", batch=True)


def test_estimate_table_shows_predicts_peak() -> None:
    code, out = light("estimate", "--model", "70b", "--strategy", "fsdp_full_shard", "--nproc", "8")
    want = expected_estimate({"model": "70b", "strategy": "fsdp_full_shard", "nproc": 8})
    assert code == 0
    peak = next(line for line in out.splitlines() if "peak (allocator)" in line)
    assert f"{want['peak_bytes'] / GIB:,.2f}" in peak
    assert f"{ZOO['70b'].param_count():,} params" in out


def test_zoo_lists_every_model_with_its_parameter_count() -> None:
    code, out = light("zoo")
    assert code == 0
    rows = table_rows(out, ZOO)
    assert set(rows) == set(ZOO)
    for name, cfg in ZOO.items():
        assert f"{cfg.param_count():,}" in rows[name]


def test_strategies_lists_every_builtin_and_whether_estimate_models_it() -> None:
    code, out = light("strategies")
    assert code == 0
    rows = table_rows(out, BUILTINS)
    assert list(rows) == list(BUILTINS)
    for name, row in rows.items():  # the last two columns: estimate, simulate
        assert row[-2] == ("yes" if has_memory_model(get_strategy(name)) else "no"), name


def test_show_lists_the_stored_records(tmp_path: Path) -> None:
    from harness.run import store
    from harness.run.records import failed_record

    store.append([failed_record(RunSpec(strategy="ddp", nproc=2), "oom", "planted")], tmp_path)
    code, out = light("show", "--store", str(tmp_path))
    assert code == 0
    assert "1 record(s)" in out and "ddp" in out and "oom" in out
    code, out = light("show", "--strategy", "tp", "--store", str(tmp_path))
    assert code == 0 and out.startswith("no records in")


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


@pytest.mark.parametrize("command", ["", *_commands()])
def test_help_of_every_command(command: str) -> None:
    code, out = light(*([command] if command else []), "--help")
    assert code == 0
    assert out.startswith(f"usage: spacetime {command}".rstrip())
