"""Memory and speed of a training step, per model and strategy (see common.py for the presets).

One measured run per (model, strategy) is launched in `setup_cache`; both classes inherit the same
`setup_cache`, so asv runs it once and shares the records.  asv treats every figure as lower-is-better.
A run the strategy cannot do here is skipped (n/a) in `setup`; a run that failed fails its benchmarks.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import check_figure, figure, measure_all, preset, strategies

Cache = dict[str, dict[str, Any]]
_PRESET = preset()


class _Measured:
    params = (list(_PRESET.models), strategies())
    param_names = ("model", "strategy")
    timeout = _PRESET.timeout_s * len(_PRESET.models) * len(strategies()) + 60

    def setup_cache(self) -> Cache:
        return measure_all(_PRESET)


class TrainStep(_Measured):
    """Figures every device has: allocated peak, RSS, step time."""

    def setup(self, cache: Cache, model: str, strategy: str) -> None:
        check_figure(cache, model, strategy, "peak_bytes")

    def track_peak_bytes(self, cache: Cache, model: str, strategy: str) -> float:
        """Largest rank's peak allocated memory over the memory steps."""
        return figure(cache, model, strategy, "peak_bytes")

    track_peak_bytes.unit = "bytes"  # type: ignore[attr-defined]

    def track_rss_peak_bytes(self, cache: Cache, model: str, strategy: str) -> float:
        """Largest rank's resident-set high-water mark (the whole process)."""
        return figure(cache, model, strategy, "rss_peak_bytes")

    track_rss_peak_bytes.unit = "bytes"  # type: ignore[attr-defined]

    def track_step_seconds(self, cache: Cache, model: str, strategy: str) -> float:
        """Median wall seconds per timed step (slowest rank)."""
        return figure(cache, model, strategy, "step_s_p50")

    track_step_seconds.unit = "seconds"  # type: ignore[attr-defined]

    def track_seconds_per_token(self, cache: Cache, model: str, strategy: str) -> float:
        """Seconds per global token at the median step: the inverse of tokens/s."""
        return 1.0 / figure(cache, model, strategy, "tokens_per_s")

    track_seconds_per_token.unit = "seconds"  # type: ignore[attr-defined]


class DeviceMemory(_Measured):
    """Figures of the CUDA caching allocator and driver: skipped (n/a) on CPU runs."""

    def setup(self, cache: Cache, model: str, strategy: str) -> None:
        check_figure(cache, model, strategy, "reserved_peak_bytes")

    def track_reserved_bytes(self, cache: Cache, model: str, strategy: str) -> float:
        """Largest rank's peak reserved memory of the CUDA caching allocator."""
        return figure(cache, model, strategy, "reserved_peak_bytes")

    track_reserved_bytes.unit = "bytes"  # type: ignore[attr-defined]

    def track_device_used_bytes(self, cache: Cache, model: str, strategy: str) -> float:
        """Largest rank's device memory in use per the driver, CUDA context and NCCL buffers included."""
        return figure(cache, model, strategy, "device_used_bytes")

    track_device_used_bytes.unit = "bytes"  # type: ignore[attr-defined]


class Utilisation(_Measured):
    """MFU where the device's peak FLOP rate is known: skipped (n/a) elsewhere."""

    def setup(self, cache: Cache, model: str, strategy: str) -> None:
        check_figure(cache, model, strategy, "mfu")

    def track_mfu_loss(self, cache: Cache, model: str, strategy: str) -> float:
        """1 - MFU: the fraction of the device's peak FLOP rate left unused."""
        return 1.0 - figure(cache, model, strategy, "mfu")

    track_mfu_loss.unit = "fraction"  # type: ignore[attr-defined]
