"""The generate workload under torchrun: greedy (and beam-search) tokens under every generating strategy equal
`single`'s on rank 0's prompts (the inference analogue of loss parity), and a record carries every generation
figure, with peak_bytes the largest of them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.core.spec import RunSpec
from harness.run.launch import _env, launch, torchrun_command
from harness.run.prebuild import prebuild
from harness.run.processes import run_env
from harness.run.validate import validate
from harness.train.cpu_allocator import counting_allocator

BASE = RunSpec(workload="generate", model="tiny", device="cpu", batch_size=2, prompt_len=8, new_tokens=5,
               timeout_s=300)


def rank_results(spec: RunSpec, folder: Path) -> list[dict[str, Any]]:
    """Each rank's figures from the worker's result file (the record keeps no tokens)."""
    spec = validate(spec)
    counting_allocator()  # built here once, as the launcher does, and named to the ranks
    assert prebuild(spec, 300) is None  # a strategy's host work, as the launcher does it (DeepSpeed's CPU comm op)
    folder.mkdir()
    out = folder / "result.json"
    cmd = torchrun_command(spec, out, folder / "ranks")
    done = subprocess.run(cmd, env={**_env(), **run_env(folder)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and out.exists(), done.stderr[-3000:]
    return sorted(json.loads(out.read_text())["ranks"], key=lambda r: r["rank"])


@pytest.fixture(scope="module")
def single() -> dict[tuple[str, int], list[dict[str, Any]]]:
    """`single`'s figures per (cache kind, beams), each run once."""
    return {}


@pytest.mark.parametrize(("strategy", "kv_cache", "num_beams"), [
    ("ddp", "static", 1), ("fsdp_full_shard", "static", 1), ("tp", "static", 1), ("zero3", "static", 1),
    ("fsdp_full_shard", "dynamic", 2), ("tp", "dynamic", 2)])
def test_generated_tokens_equal_single(tmp_path: Path, single: dict[tuple[str, int], list[dict[str, Any]]],
                                       strategy: str, kv_cache: str, num_beams: int) -> None:
    spec = BASE.with_(kv_cache=kv_cache, num_beams=num_beams)
    if (kv_cache, num_beams) not in single:
        single[kv_cache, num_beams] = rank_results(spec, tmp_path / "single")
    reference = single[kv_cache, num_beams]
    ranks = rank_results(spec.with_(strategy=strategy, nproc=2), tmp_path / strategy)
    assert ranks[0]["tokens_digest"] == reference[0]["tokens_digest"]
    if strategy == "tp":  # every rank the same prompts, half of each matrix and of the kv heads
        assert ranks[1]["tokens_digest"] == ranks[0]["tokens_digest"]
        assert 2 * ranks[0]["kv_cache_bytes"] == reference[0]["kv_cache_bytes"]
        return
    assert ranks[1]["tokens_digest"] != ranks[0]["tokens_digest"]  # the other rank's own prompts
    if strategy in ("fsdp_full_shard", "zero3"):  # sharded weights: half the parameter bytes on each rank
        assert 2 * ranks[0]["param_bytes"] == reference[0]["param_bytes"]
    else:
        assert ranks[0]["param_bytes"] == reference[0]["param_bytes"]
    assert ranks[0]["kv_cache_bytes"] == reference[0]["kv_cache_bytes"]


def test_a_bf16_record_has_every_generation_figure() -> None:
    spec = validate(BASE.with_(dtype="bf16", batch_size=3, new_tokens=4))
    record = launch(spec)
    assert record.status == "ok", record.error
    figures = {"load_bytes": record.load_bytes, "prefill_peak_bytes": record.prefill_peak_bytes,
               "decode_peak_bytes": record.decode_peak_bytes}
    assert all(isinstance(v, int) and v > 0 for v in figures.values()), figures
    assert record.peak_bytes == max(figures.values())
    assert record.param_bytes_per_rank is not None
    assert record.load_bytes is not None and record.load_bytes >= record.param_bytes_per_rank[0]
    assert record.kv_cache_bytes == 2 * 4 * 3 * 4 * (8 + 4) * 32 * 2  # k and v, layers, rows, kv heads, bf16
    times = [record.ttft_s, record.decode_s_per_token_p10, record.decode_s_per_token_p50,
             record.decode_s_per_token_p90, record.tokens_per_s_per_seq, record.tokens_per_s]
    assert all(isinstance(t, float) and t > 0 for t in times), times
    assert record.decode_s_per_token_p10 <= record.decode_s_per_token_p50 <= record.decode_s_per_token_p90
    assert record.tokens_per_s == pytest.approx(3 * record.tokens_per_s_per_seq)
    row = record.to_row()
    assert row["workload"] == "generate" and row["ttft_s"] == record.ttft_s


def test_disk_offload_keeps_the_tokens_and_moves_the_weights_out(tmp_path: Path) -> None:
    """--offload disk: the same tokens as without offload; after loading only the buffers stay in memory, and
    each phase's peak is below the weights' bytes alone."""
    kept = rank_results(BASE, tmp_path / "none")[0]
    offloaded = rank_results(BASE.with_(offload="disk"), tmp_path / "disk")[0]
    assert offloaded["tokens_digest"] == kept["tokens_digest"]
    assert offloaded["param_bytes"] == 0 and kept["param_bytes"] > 0
    assert offloaded["load_bytes"] == kept["load_bytes"] - kept["param_bytes"]  # the RoPE table stays
    for phase in ("prefill_peak_bytes", "decode_peak_bytes"):
        assert offloaded[phase] < kept["param_bytes"] < kept[phase]
