"""The record of a generate run, from its ranks' figures (harness/run/generate_worker.py).

Memory: each figure is the largest over ranks; peak_bytes is the largest of load, prefill and decode peaks, so
every table and gate that reads peak_bytes reads generation rows too.  Time: each decode step is the slowest
rank's, time to first token the slowest rank's; tokens per second per sequence is new tokens over the whole
generation's seconds, and the aggregate counts every sequence of every data-parallel rank.
"""

from __future__ import annotations

import math
from typing import Any

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.train.measure import percentile


def _max(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def generation_record(spec: RunSpec, result: dict[str, Any], wall_s: float, env: dict[str, Any]) -> Record:
    ranks = sorted(result["ranks"], key=lambda r: r["rank"])
    layout = result["layout"]
    dp = layout["dp_replicate"] * layout["dp_shard"]
    per_step = [max(steps) for steps in zip(*(r["decode_s"] for r in ranks), strict=True)]
    total_s = max(r["total_s"] for r in ranks)
    per_seq = spec.new_tokens / total_s
    peaks = [r["alloc_peak_bytes"] for r in ranks]
    return Record(
        spec=spec, status="ok", world_size=spec.nproc, mesh_dp_replicate=layout["dp_replicate"],
        mesh_dp_shard=layout["dp_shard"], mesh_tp=layout["tp"], global_batch=spec.batch_size * dp,
        peak_bytes=_max(peaks), peak_bytes_per_rank=peaks,
        rss_peak_bytes=_max([r["rss_peak_bytes"] for r in ranks]),
        rss_peak_bytes_per_rank=[r["rss_peak_bytes"] for r in ranks],
        reserved_peak_bytes=_max([r["reserved_peak_bytes"] for r in ranks]),
        device_used_bytes=_max([r["device_used_bytes"] for r in ranks]),
        param_bytes_per_rank=[r["param_bytes"] for r in ranks], trainable_params=0,
        load_bytes=_max([r["load_bytes"] for r in ranks]),
        prefill_peak_bytes=_max([r["prefill_peak_bytes"] for r in ranks]),
        decode_peak_bytes=_max([r["decode_peak_bytes"] for r in ranks]),
        kv_cache_bytes=_max([r["kv_cache_bytes"] for r in ranks]),
        ttft_s=max(r["ttft_s"] for r in ranks),
        decode_s_per_token_p50=_finite(percentile(per_step, 50)),
        decode_s_per_token_p10=_finite(percentile(per_step, 10)),
        decode_s_per_token_p90=_finite(percentile(per_step, 90)),
        tokens_per_s_per_seq=per_seq, tokens_per_s=per_seq * spec.batch_size * dp, wall_s=wall_s, env=env)
