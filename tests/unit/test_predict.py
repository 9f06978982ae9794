"""`spacetime estimate`: the source documents' arithmetic pinned, the JSON contract, fits and max batch.
Predicted peaks are checked against measured ones where the runs happen (tests/test_parity.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from harness.cli.figures import estimate_figures
from harness.core.errors import SpecError
from harness.core.memory import CATEGORIES
from harness.core.spec import RunSpec
from harness.core.units import GIB
from harness.estimate.fit import max_batch, memory_limit
from harness.estimate.model_bytes import OPTIMIZER_STATE
from harness.estimate.predict import predict
from harness.estimate.rules_of_thumb import int8_training_example, source_arithmetic
from harness.models.zoo import ZOO, get_config
from harness.run.validate import validate
from strategies import get_strategy


def test_the_source_documents_arithmetic_is_reproduced() -> None:
    cfg = get_config("baichuan-7b")
    assert cfg.param_count() == 7_000_559_616
    naive = source_arithmetic(cfg)
    assert [round(naive[f"weights {w}"], 2) for w in ("fp32", "fp16", "int8", "int4")] == [26.08, 13.04, 6.52, 3.26]
    assert naive["AdamW states (8 B/param)"] == pytest.approx(8 * cfg.param_count() / GIB)
    assert naive["8-bit AdamW states (2 B/param)"] == pytest.approx(2 * cfg.param_count() / GIB)
    assert naive["SGD momentum (4 B/param)"] == pytest.approx(4 * cfg.param_count() / GIB)
    assert int8_training_example() == {"weights": 6.0, "gradients": 6.0, "optimizer": 12.0, "activations": 1.3,
                                       "total": pytest.approx(25.3)}
    # the realistic model counts what the rule of thumb leaves out: 8-bit AdamW's block scales
    assert OPTIMIZER_STATE["adamw"] == 8 and OPTIMIZER_STATE["sgd"] == 4 and 2 < OPTIMIZER_STATE["adamw8bit"] < 2.1


def _args(**kw: object) -> SimpleNamespace:
    return SimpleNamespace(**{"gpu": None, "gpu_memory": None, "max_batch": False, "inference": False, **kw})


def test_sharding_divides_model_state_and_offload_moves_it_to_the_host() -> None:
    spec = RunSpec(model="7b", nproc=8, batch_size=1, seq_len=2048, dtype="bf16", device="cuda")
    ddp = predict(spec.with_(strategy="ddp"), get_strategy("ddp").memory_profile(spec), "cuda")  # type: ignore[arg-type]
    fsdp_spec = spec.with_(strategy="fsdp_full_shard")
    fsdp = predict(fsdp_spec, get_strategy("fsdp_full_shard").memory_profile(fsdp_spec), "cuda")  # type: ignore[arg-type]
    assert fsdp.breakdown["optimizer"] == pytest.approx(ddp.breakdown["optimizer"] / 8, rel=1e-6)
    assert fsdp.breakdown["params"] == pytest.approx(ddp.breakdown["params"] / 8, rel=1e-6)
    off_spec = spec.with_(strategy="fsdp_offload")
    off = predict(off_spec, get_strategy("fsdp_offload").memory_profile(off_spec), "cuda")  # type: ignore[arg-type]
    assert off.breakdown["optimizer"] == 0 and off.host_bytes > fsdp.breakdown["optimizer"]
    assert set(fsdp.breakdown) == set(CATEGORIES) and fsdp.breakdown["context"] > 0


def test_checkpointing_and_lora_lower_the_prediction() -> None:
    spec = RunSpec(model="1b", batch_size=4, seq_len=1024, device="cuda", dtype="bf16")
    profile = get_strategy("single").memory_profile(spec)
    assert profile is not None
    base = predict(spec, profile).peak_bytes
    assert predict(spec.with_(activation_checkpointing="full"), profile).peak_bytes < base
    assert predict(spec.with_(lora_rank=8), profile).peak_bytes < base


def test_fits_and_the_largest_batch_that_fits() -> None:
    spec = validate(RunSpec(model="8b", strategy="fsdp_full_shard", nproc=8, seq_len=2048, dtype="bf16",
                   device="cuda"), measure=False)
    _, out = estimate_figures(spec, _args(gpu="H100-80GB", max_batch=True))
    best = out["max_batch"]
    assert best >= 1 and out["fits"]["capacity_bytes"] == 80 * GIB
    profile = get_strategy(spec.strategy).memory_profile(spec)
    assert profile is not None
    assert predict(spec.with_(batch_size=best), profile).device_bytes <= 80 * GIB
    assert predict(spec.with_(batch_size=best + 1), profile).device_bytes > 80 * GIB
    assert max_batch(spec, 1 * GIB) == 0  # 8b's shard alone is more than 1 GiB


def test_memory_limits_parse_and_bad_ones_name_the_flag() -> None:
    assert memory_limit(None, "24GB") == ("24GB", 24 * 10**9)
    assert memory_limit(None, "40") == ("40", 40 * GIB)
    assert memory_limit("h100-80gb", None) == ("H100-80GB", 80 * GIB)
    with pytest.raises(SpecError, match="--gpu: unknown GPU 'B300'; valid: H200-141GB"):
        memory_limit("B300", None)
    with pytest.raises(SpecError, match="--gpu-memory: expected a size"):
        memory_limit(None, "lots")


def test_every_zoo_model_up_to_70b_can_be_estimated() -> None:
    for name in ZOO:
        spec = validate(RunSpec(model=name, strategy="fsdp_full_shard", nproc=8, device="cuda"), measure=False)
        assert predict(spec, get_strategy(spec.strategy).memory_profile(spec)).peak_bytes > 0  # type: ignore[arg-type]


def _estimate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "estimate", *args], capture_output=True,
                          text=True, timeout=120)


def test_estimate_json_is_one_object_on_the_last_line() -> None:
    done = _estimate("--model", "70b", "--strategy", "fsdp_tp", "--nproc", "16", "--tp", "8", "--dtype", "bf16",
                     "--seq-len", "4096", "--batch-size", "1", "--gpu", "H100-80GB", "--inference", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(out["breakdown"]) == set(CATEGORIES)
    assert out["peak_bytes"] == sum(v for k, v in out["breakdown"].items() if k != "context")
    assert out["fits"]["device"] == "H100-80GB" and isinstance(out["fits"]["fits"], bool)
    assert out["inference_bytes"] > 0


@pytest.mark.parametrize(("args", "message"), [
    (("--gpu", "B300"), "spacetime: error: --gpu: unknown GPU 'B300'"),
    (("--max-batch",), "spacetime: error: --max-batch: needs the memory to fit"),
    (("--model", "nope"), "spacetime: error: --model: unknown model 'nope'"),
])
def test_bad_estimate_input_is_one_line_exit_2(args: tuple[str, ...], message: str, cli: Any) -> None:
    code, err = cli(["estimate", *args])
    assert code == 2 and err.strip().startswith(message) and len(err.strip().splitlines()) == 1, err


def test_a_strategy_without_a_memory_model_says_so(cli: Any) -> None:
    code, err = cli(["estimate", "--strategy", "accelerate_fsdp", "--nproc", "2"])
    assert code == 1 and "no memory model of accelerate_fsdp yet" in err


def _zero(strategy: str, **kw: Any) -> Any:
    spec = RunSpec(model="7b", strategy=strategy, nproc=8, batch_size=1, seq_len=2048, dtype="bf16",
                   activation_checkpointing="full", device="cuda", **kw)
    return predict(spec, get_strategy(strategy).memory_profile(spec), "cuda")  # type: ignore[arg-type]


def test_zero_stages_partition_more_and_offload_moves_state_to_the_host() -> None:
    """On 8 ranks each stage holds less than the one before; the terms are DeepSpeed's buffers."""
    cfg = get_config("7b")
    n = cfg.param_count()
    one, two, three = (_zero(s) for s in ("zero1", "zero2", "zero3"))
    assert one.peak_bytes > two.peak_bytes > three.peak_bytes
    # stages 1-2 keep every bf16 parameter; stage 3 a shard, with its norms whole
    assert one.breakdown["params"] == two.breakdown["params"] == 2 * n
    assert three.breakdown["params"] == pytest.approx(2 * n / 8, rel=1e-3)
    # fp32 masters and AdamW's two states, partitioned at every stage
    assert one.breakdown["optimizer"] == two.breakdown["optimizer"] == pytest.approx(12 * n / 8)
    assert one.phase == "backward end" and one.breakdown["grads"] == pytest.approx(2 * n + 2 * n / 8)
    # the bf16 partition, its flattened copy and that copy in fp32
    assert two.phase == "gradients flattened" and two.breakdown["grads"] == pytest.approx((2 + 2 + 4) * n / 8)
    two_off, three_off = _zero("zero2_offload"), _zero("zero3_offload")
    assert two_off.breakdown["optimizer"] == three_off.breakdown["optimizer"] == 0
    assert three_off.breakdown["params"] < 0.01 * three.breakdown["params"]  # only the persistent norms
    assert two_off.host_bytes == pytest.approx(12 * n / 8 + 4 * n / 8 + 2 * n / 8 + 2 * cfg.vocab_size * cfg.dim,
                                               rel=1e-6)
    assert three_off.peak_bytes < two_off.peak_bytes < two.peak_bytes


def test_zero_on_a_cpu_counts_torchs_adamw_and_gloos_gather() -> None:
    """Without offload DeepSpeed steps torch's AdamW on a CPU (sqrt(v) and its quotient over the flat fp32
    partition); gloo gathers the updated partitions through a buffer the size of its output."""
    spec = RunSpec(model="tiny", strategy="zero2", nproc=2, batch_size=2, seq_len=64, device="cpu")
    n = get_config("tiny").param_count()
    cpu = predict(spec, get_strategy("zero2").memory_profile(spec), "cpu")  # type: ignore[arg-type]
    assert cpu.phase == "optimizer step" and cpu.breakdown["temporaries"] == 2 * 4 * n / 2
    sgd = spec.with_(optimizer="sgd")
    assert predict(sgd, get_strategy("zero2").memory_profile(sgd), "cpu").phase == "all-gather"  # type: ignore[arg-type]
