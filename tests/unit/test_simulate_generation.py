"""`spacetime simulate --workload generate`: the generation loop under fake tensors, its JSON, what it refuses, how
the strategies divide its figures, and the CPU kernels' scratch and view strides it puts right.  (Its figures
against measured ones: tests/accuracy/test_generation_accuracy.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from harness.core.memory import CUDA_CONTEXT_BYTES
from harness.core.spec import RunSpec
from harness.models.zoo import ZOO
from harness.simulate.generate_runner import FIGURES, simulate_generation

TINY = RunSpec(model="tiny", workload="generate", batch_size=2, prompt_len=32, new_tokens=4, device="cpu")


def static_cache_bytes(spec: RunSpec, tp: int = 1) -> int:
    cfg = ZOO[spec.model]
    width = 2 if spec.dtype.startswith("bf16") else 4
    return (2 * cfg.n_layers * cfg.n_kv_heads // tp * cfg.head_dim * (spec.prompt_len + spec.new_tokens)
            * spec.batch_size * spec.num_beams * width)


def test_json_has_the_records_figures_and_fits(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.main import main

    assert main(["simulate", "--workload", "generate", "--model", "tiny", "--batch-size", "2", "--prompt-len",
                 "32", "--new-tokens", "4", "--gpu-memory", "1GiB", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["workload"] == "generate" and set(FIGURES) <= set(out)
    assert out["peak_bytes"] == max(out["load_bytes"], out["prefill_peak_bytes"], out["decode_peak_bytes"])
    assert out["context_bytes"] == CUDA_CONTEXT_BYTES  # the default target is CUDA, as for estimate
    assert out["device_bytes"] == out["peak_bytes"] + CUDA_CONTEXT_BYTES
    assert out["fits"]["free_bytes"] == 2**30 - out["device_bytes"]
    assert out["kv_cache_bytes"] == static_cache_bytes(TINY.with_(dtype=RunSpec().dtype))


@pytest.mark.parametrize("args, reason", [
    (["--quant", "int4-torchao", "--dtype", "bf16"], "cannot simulate --quant int4-torchao: torchao 0.18 has no int4"),
    (["--quant", "nf4", "--device", "cuda"], "cannot simulate --quant nf4 on a CUDA target: bitsandbytes' CUDA"),
    (["--offload", "disk"], "cannot simulate --offload disk"),
    (["--strategy", "zero1", "--nproc", "2"], "zero1 with --workload generate: ZeRO-1 partitions optimizer state"),
    (["--strategy", "zero3", "--nproc", "2"], "cannot simulate zero3: DeepSpeed's engine reads real data"),
])
def test_says_plainly_what_it_cannot_simulate(cli: Any, args: list[str], reason: str) -> None:
    code, err = cli(["simulate", "--workload", "generate", "--model", "tiny", "--device", "cpu", *args])
    assert code == 1 and err.startswith(f"spacetime: unsupported: {reason}"), err
    assert "Traceback" not in err


def test_strategies_divide_weights_and_cache_as_they_load() -> None:
    """ddp holds the whole model per rank, fsdp_full_shard half of it between forwards, tp half of the weights
    and half of the kv heads; every decode step runs, so a dynamic cache ends one position short of a static one
    (the last token is chosen, never fed back)."""
    single = simulate_generation(TINY)
    ddp = simulate_generation(TINY.with_(strategy="ddp", nproc=2))
    fsdp = simulate_generation(TINY.with_(strategy="fsdp_full_shard", nproc=2))
    tp = simulate_generation(TINY.with_(strategy="tp", nproc=2))
    dynamic = simulate_generation(TINY.with_(kv_cache="dynamic"))
    assert single.figures["kv_cache_bytes"] == static_cache_bytes(TINY)
    positions = TINY.prompt_len + TINY.new_tokens
    assert dynamic.figures["kv_cache_bytes"] == static_cache_bytes(TINY) * (positions - 1) // positions
    assert tp.figures["kv_cache_bytes"] == static_cache_bytes(TINY, tp=2)
    assert ddp.figures["load_bytes"] >= single.figures["load_bytes"]  # the whole batch of prompts besides
    assert fsdp.figures["load_bytes"] == pytest.approx(single.figures["load_bytes"] / 2, rel=0.02)
    assert tp.figures["load_bytes"] < 0.6 * single.figures["load_bytes"]
    assert fsdp.figures["prefill_peak_bytes"] > fsdp.figures["load_bytes"]  # blocks gathered in the forward


def test_beams_multiply_the_cache_rows() -> None:
    beams = simulate_generation(TINY.with_(num_beams=2))
    assert beams.figures["kv_cache_bytes"] == 2 * static_cache_bytes(TINY)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("queries, keys", [(64, 64), (1, 70), (200, 200)])
def test_cpu_attention_scratch_is_what_the_kernel_allocates(dtype: torch.dtype, queries: int, keys: int) -> None:
    """The counting allocator around a real SDPA call: its peak beyond the inputs, output and log-sum-exp."""
    from harness.simulate.cpu_scratch import flash_scratch_bytes
    from harness.train.cpu_allocator import counting_allocator

    counter = counting_allocator()
    q, k = torch.randn(2, 4, queries, 32, dtype=dtype), torch.randn(2, 4, keys, 32, dtype=dtype)
    threads = torch.get_num_threads()
    counter.install()
    try:
        counter.reset_peak()
        before = counter.current_bytes()
        out = F.scaled_dot_product_attention(q, k, k, is_causal=queries == keys)
        extra = counter.peak_bytes() - before - out.untyped_storage().nbytes() - 2 * 4 * queries * 4
    finally:
        counter.uninstall()
    assert extra == flash_scratch_bytes(q, k, threads)


def test_a_contiguous_view_under_simulation_has_a_real_views_strides() -> None:
    """A decode step's attention output seen as (batch, 1, heads x head_dim): the strides real tensors give,
    so matmul folds it into one mm as it does for real."""
    from harness.simulate.fake_mode import SimFakeMode
    from harness.simulate.phase_tracker import PhaseTracker

    real = torch.randn(2, 8, 1, 32).transpose(1, 2).reshape(2, 1, -1)
    with SimFakeMode(allow_non_fake_inputs=True), PhaseTracker() as tracker:
        fake = torch.randn(2, 8, 1, 32).transpose(1, 2).reshape(2, 1, -1)
        assert tracker.now() > 0
    assert fake.stride() == real.stride()
