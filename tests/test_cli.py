"""The `spacetime` command as a user meets it: one-line errors with exit 2, JSON records, listings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BAD_INPUT = [
    ["run", "--model", "nope"],
    ["run", "--strategy", "nope"],
    ["run", "--strategy", "single", "--nproc", "2"],
    ["run", "--batch-size", "0"],
    ["run", "--batch-size", "four"],
    ["run", "--strategy", "tp", "--nproc", "3"],
    ["run", "--strategy", "fsdp_hybrid_shard", "--nproc", "1"],
    ["run", "--device", "tpu"],
    ["run", "--timeout", "0"],
    ["run", "--no-such-flag"],
    ["sweep", "--preset", "nope"],
    ["sweep", "--strategies", "single,nope"],
    ["sweep", "--global-batch", "3"],
    ["run", "--strategy", "ddp", "--nproc", "2", "--nnodes", "2"],  # no --rdzv-endpoint
    ["run", "--strategy", "ddp", "--nproc", "2", "--nnodes", "2", "--rdzv-endpoint", "node0"],
    ["run", "--strategy", "ddp", "--nproc", "2", "--nnodes", "2", "--rdzv-endpoint", "h:1", "--node-rank", "2"],
    ["run", "--strategy", "ddp", "--nproc", "3", "--nnodes", "2", "--rdzv-endpoint", "h:1"],
    ["run", "--strategy", "ddp", "--nproc", "2", "--node-rank", "1"],
    ["simulate", "--model", "nope"],
    ["simulate", "--strategy", "tp", "--nproc", "3"],
    ["simulate", "--gpu", "H100-81GB"],
    ["simulate", "--gpu-memory", "lots"],
    ["bogus-command"],
]


def spacetime(*args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SPACETIME_STORE=str(store)) if store else dict(os.environ)
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("args", BAD_INPUT, ids=" ".join)
def test_bad_input_is_one_line_exit_2_nothing_launched(args: list[str], store_dir: Path, cli: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACETIME_STORE", str(store_dir))
    code, err = cli(args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spacetime: error: "), err
    assert "Traceback" not in err
    assert not store_dir.exists()  # nothing ran, nothing was recorded


def test_the_installed_entry_point_reports_bad_input_the_same_way(store_dir: Path) -> None:
    result = spacetime(*BAD_INPUT[0], store=store_dir)
    assert result.returncode == 2 and result.stderr.startswith("spacetime: error: --model: unknown model")
    assert len(result.stderr.strip().splitlines()) == 1 and not store_dir.exists()


def test_zoo_lists_exact_counts() -> None:
    out = spacetime("zoo").stdout
    assert "6,738,415,616" in out and "8,030,261,248" in out and "7,000,559,616" in out


@pytest.mark.slow
def test_run_json_is_the_last_stdout_line_and_is_stored(store_dir: Path) -> None:
    result = spacetime("run", "--model", "tiny", "--strategy", "ddp", "--nproc", "2", "--steps", "3",
                       "--batch-size", "2", "--seq-len", "32", "--json", "--predict", "--simulate", store=store_dir)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("status", "strategy", "model", "world_size", "device", "peak_bytes", "rss_peak_bytes",
                "step_s_p50", "step_s_p10", "step_s_p90", "tokens_per_s", "mfu", "loss"):
        assert key in record, key
    assert record["status"] == "ok" and record["world_size"] == 2 and record["device"] == "cpu"
    assert record["step_s_p10"] <= record["step_s_p50"] <= record["step_s_p90"]
    assert record["tokens_per_s"] == pytest.approx(2 * 2 * 32 / record["step_s_p50"])
    assert record["peak_bytes"] == max(record["peak_bytes_per_rank"]) > 0
    assert record["rss_peak_bytes"] > record["peak_bytes"]
    assert record["mfu"] is None  # no peak FLOP rate is known for a CPU
    # the three figures side by side: simulate plays one rank of the same program (ranks differ only by when
    # gloo's worker thread lets go of finished collectives' buffers, which can only add)
    assert record["simulate_error"] is None
    assert record["simulated_peak_bytes"] == pytest.approx(min(record["peak_bytes_per_rank"]), rel=0.01)
    assert record["predicted_peak_bytes"] == pytest.approx(record["peak_bytes"], rel=0.05)

    shown = spacetime("show", "--strategy", "ddp", store=store_dir)
    assert shown.returncode == 0 and "ddp" in shown.stdout and "1 record(s)" in shown.stdout
    assert "predicted" in shown.stdout and "simulated" in shown.stdout  # headers (rich may wrap them)
    assert "no records" in spacetime("show", "--strategy", "tp", store=store_dir).stdout
