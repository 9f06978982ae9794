"""DeepSpeed ZeRO without a launch: its config built from the spec, the ops each variant builds, what it
cannot run, and `run --dry-run` printing the config."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import Unsupported
from harness.models.zoo import config_for
from harness.run.validate import validate
from strategies import get_strategy
from strategies.deepspeed import ds_config
from tests.helpers import QUICK, needs


def test_the_config_is_built_from_the_spec() -> None:
    spec = QUICK.with_(nproc=4, batch_size=2, grad_accum=3, dtype="bf16", optimizer="sgd", lr=0.01)
    config = ds_config(spec, stage=3, offload_optimizer=True, offload_params=True)
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"],
            config["train_batch_size"]) == (2, 3, 24)
    assert config["bf16"] == {"enabled": True} and config["fp16"]["enabled"] is False
    assert config["optimizer"] == {"type": "SGD", "params": {"lr": 0.01, "momentum": 0.9}}
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_param"] == zero["offload_optimizer"] == {
        "device": "cpu", "pin_memory": False}  # pinning needs an accelerator
    hidden = config_for(spec).dim
    assert zero["reduce_bucket_size"] == hidden * hidden  # as the HF Trainer fills DeepSpeed's "auto"
    assert zero["stage3_max_live_parameters"] == zero["stage3_max_reuse_distance"] < 1e9  # released after use
    adamw = ds_config(QUICK.with_(nproc=2, device="cpu"), stage=1)
    assert adamw["optimizer"]["type"] == "AdamW" and adamw["optimizer"]["params"]["weight_decay"] == 0.0
    assert adamw["optimizer"]["params"]["torch_adam"] is True  # on CPU; FusedAdam on CUDA
    gpu = ds_config(QUICK.with_(nproc=2, device="cuda"), stage=1)
    assert "torch_adam" not in gpu["optimizer"]["params"]
    assert "offload_optimizer" not in adamw["zero_optimization"]


def test_each_variant_builds_the_ops_it_loads() -> None:
    cpu = QUICK.with_(nproc=2, device="cpu")
    assert get_strategy("zero1").op_builders(cpu) == ["ShareMemCommBuilder"]  # type: ignore[attr-defined]
    assert get_strategy("zero1").op_builders(cpu.with_(device="cuda")) == ["FusedAdamBuilder"]  # type: ignore[attr-defined]
    assert get_strategy("zero3_offload").op_builders(cpu) == ["ShareMemCommBuilder", "CPUAdamBuilder"]  # type: ignore[attr-defined]
    assert get_strategy("zero2").op_builders(cpu.with_(optimizer="sgd")) == ["ShareMemCommBuilder"]  # type: ignore[attr-defined]


@needs("deepspeed")
@pytest.mark.parametrize(("fields", "reason"), [
    ({"quant": "nf4", "lora_rank": 8}, "bitsandbytes' packed weights are not partitionable"),
    ({"dtype": "bf16-pure"}, "keeps fp32 master weights"),
    ({"optimizer": "adamw8bit"}, "8-bit client optimizer"),
    ({"optimizer": "adafactor"}, "Adafactor factors the second moment"),
    ({"dtype": "fp16", "device": "cpu"}, "only where oneDNN has fp16 kernels"),
])
def test_what_zero_cannot_run_is_unsupported_with_the_reason(fields: dict[str, object], reason: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("strategies.deepspeed._cpu_has_fp16", lambda: False)  # as on this project's CPUs
    with pytest.raises(Unsupported, match=reason):
        validate(QUICK.with_(strategy="zero2", nproc=2, **fields))  # type: ignore[arg-type]


def test_without_deepspeed_installed_the_record_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(Unsupported, match=r"deepspeed is not installed \(pip install 'spacetime\[deepspeed\]'\)"):
        validate(QUICK.with_(strategy="zero1", nproc=2))


def test_dry_run_prints_the_config_a_run_would_use_and_launches_nothing(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--strategy", "zero2", "--nproc", "2",
                             "--batch-size", "3", "--grad-accum", "2", "--dry-run", "--store", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["spec"]["strategy"] == "zero2" and shown["spec"]["device"] == "cpu"
    config = shown["framework_config"]
    assert config["zero_optimization"]["stage"] == 2 and config["train_batch_size"] == 3 * 2 * 2
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was stored
