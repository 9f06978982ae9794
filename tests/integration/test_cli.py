"""`spacetime run` end to end: one JSON record on the last stdout line, stored, and shown by `spacetime show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import spacetime


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
