"""Memory and speed of generation (--workload generate): load, decode peak, time to first token and seconds per
decoded token, one parameter per KV-cache kind, on the asv preset's first model (`tiny` on the CPU preset).

Both runs are launched in `setup_cache` (nothing at import); asv treats every figure as lower-is-better.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import check_row, measure_specs, preset, row_figure

Cache = dict[str, dict[str, Any]]
_PRESET = preset()
KV_CACHES = ("static", "dynamic")


def generate_specs() -> dict[str, Any]:
    """One generate spec per KV-cache kind: `single`, batch 4, a 64-token prompt and 16 new tokens."""
    from harness.core.spec import RunSpec

    return {kind: RunSpec(model=_PRESET.models[0], workload="generate", batch_size=4, prompt_len=64, new_tokens=16,
                          kv_cache=kind, timeout_s=_PRESET.timeout_s) for kind in KV_CACHES}


class Generate:
    """Generation under `single`, by KV-cache kind (pre-allocated, or grown per token)."""

    params = (list(KV_CACHES),)
    param_names = ("kv_cache",)
    timeout = _PRESET.timeout_s * len(KV_CACHES) + 60

    def setup_cache(self) -> Cache:
        return measure_specs(generate_specs())

    def setup(self, cache: Cache, kv_cache: str) -> None:
        check_row(cache[kv_cache], "load_bytes")

    def track_load_bytes(self, cache: Cache, kv_cache: str) -> float:
        """Memory after loading: the weights (and what the quantizer keeps)."""
        return row_figure(cache[kv_cache], "load_bytes", kv_cache)

    track_load_bytes.unit = "bytes"  # type: ignore[attr-defined]

    def track_decode_peak_bytes(self, cache: Cache, kv_cache: str) -> float:
        """Peak memory over the decode steps, weights and KV cache included."""
        return row_figure(cache[kv_cache], "decode_peak_bytes", kv_cache)

    track_decode_peak_bytes.unit = "bytes"  # type: ignore[attr-defined]

    def track_time_to_first_token(self, cache: Cache, kv_cache: str) -> float:
        """Seconds from the prompt to the first new token (the prefill)."""
        return row_figure(cache[kv_cache], "ttft_s", kv_cache)

    track_time_to_first_token.unit = "seconds"  # type: ignore[attr-defined]

    def track_seconds_per_token(self, cache: Cache, kv_cache: str) -> float:
        """Median seconds per decode step (one new token for every sequence)."""
        return row_figure(cache[kv_cache], "decode_s_per_token_p50", kv_cache)

    track_seconds_per_token.unit = "seconds"  # type: ignore[attr-defined]
