"""Generate records in the records table: their figures as columns (only where a row is a generate record),
and every one of them in the machine formats."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.report.cases import shape
from harness.report.tables import print_records, record_columns

GEN = Record(spec=RunSpec(workload="generate", batch_size=2, prompt_len=32, new_tokens=8, num_beams=3),
             status="ok", global_batch=2, peak_bytes=3 << 20, load_bytes=1 << 20, prefill_peak_bytes=3 << 20,
             decode_peak_bytes=2 << 20, kv_cache_bytes=1 << 19, ttft_s=0.25, decode_s_per_token_p50=0.02,
             decode_s_per_token_p10=0.01, decode_s_per_token_p90=0.04, tokens_per_s_per_seq=30.0,
             tokens_per_s=60.0).to_row()
TRAIN = Record(spec=RunSpec(), status="ok", global_batch=4, peak_bytes=5 << 20).to_row()


def test_generation_columns_only_where_a_row_generates() -> None:
    keys = {c.key for c in record_columns([TRAIN])}
    assert "load_mib" not in keys and "ttft_s" not in keys
    keys = {c.key for c in record_columns([TRAIN, GEN])}
    assert {"load_mib", "prefill_mib", "decode_mib", "kv_cache_mib", "ttft_s", "decode_s_per_token"} <= keys


def test_the_table_shows_the_generation_figures() -> None:
    out = Console(width=400, record=True)
    print_records([GEN], out=out, wide=True)
    text = out.export_text()
    for figure in ("1.0", "3.0", "2.0", "0.5", "0.250", "0.0200 [0.0100-0.0400]", "30.0"):
        assert figure in text, figure
    assert shape(GEN) == "2 x 3 beams x (32 + 8)" and shape(TRAIN) == "4 x 128"


def test_json_carries_every_generation_field(capsys: pytest.CaptureFixture[str]) -> None:
    print_records([GEN], fmt="json")
    row = json.loads(capsys.readouterr().out)[0]
    for field in ("workload", "prompt_len", "new_tokens", "num_beams", "kv_cache", "offload", "load_bytes",
                  "prefill_peak_bytes", "decode_peak_bytes", "kv_cache_bytes", "ttft_s",
                  "decode_s_per_token_p50", "decode_s_per_token_p10", "decode_s_per_token_p90",
                  "tokens_per_s_per_seq"):
        assert row[field] == GEN[field], field


def test_run_predict_and_simulate_beside_a_generate_record_are_generation_figures() -> None:
    from harness.estimate.generation import predict_generation
    from harness.run.annotate import annotate
    from harness.simulate.generate_runner import simulate_generation

    spec = RunSpec(workload="generate", device="cpu", batch_size=2, prompt_len=32, new_tokens=8)
    record = annotate(Record(spec=spec, status="ok", peak_bytes=1), predict=True, simulate=True)
    assert record.predicted_peak_bytes == predict_generation(spec, device="cpu").peak_bytes
    assert record.predicted_peak_bytes != annotate(Record(spec=RunSpec(device="cpu"), status="ok"), True,
                                                   False).predicted_peak_bytes
    assert record.simulate_error is None  # the generation itself under fake tensors, in a process of its own
    assert record.simulated_peak_bytes == simulate_generation(spec, "cpu").peak_bytes


def test_a_generate_record_takes_the_slowest_rank_and_counts_every_sequence() -> None:
    from harness.run.generation_records import generation_record

    def rank(i: int, decode: list[float], total: float, peaks: tuple[int, int, int]) -> dict[str, object]:
        return {"rank": i, "decode_s": decode, "total_s": total, "ttft_s": total - sum(decode),
                "load_bytes": peaks[0], "prefill_peak_bytes": peaks[1], "decode_peak_bytes": peaks[2],
                "alloc_peak_bytes": max(peaks), "kv_cache_bytes": 640, "rss_peak_bytes": 10,
                "reserved_peak_bytes": None, "device_used_bytes": None, "param_bytes": peaks[0]}

    spec = RunSpec(workload="generate", strategy="ddp", nproc=2, batch_size=3, new_tokens=4)
    result = {"ranks": [rank(1, [0.1, 0.4, 0.2], 1.0, (100, 300, 200)), rank(0, [0.3, 0.2, 0.2], 2.0, (100, 250, 400))],
              "layout": {"dp_replicate": 1, "dp_shard": 2, "tp": 1}}
    record = generation_record(spec, result, 5.0, {})
    assert record.peak_bytes == 400 and record.peak_bytes_per_rank == [400, 300]
    assert (record.load_bytes, record.prefill_peak_bytes, record.decode_peak_bytes) == (100, 300, 400)
    assert record.decode_s_per_token_p50 == 0.3 and record.decode_s_per_token_p90 == pytest.approx(0.38)
    assert record.ttft_s == pytest.approx(1.3)
    assert record.tokens_per_s_per_seq == 2.0 and record.tokens_per_s == 2.0 * 3 * 2
    assert record.global_batch == 6
