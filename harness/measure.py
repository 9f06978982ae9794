"""Timers, memory probes and FLOP/MFU arithmetic used by the worker.

Memory is measured in a dedicated step, time in other steps, so profiling never slows a timed step.
- CUDA: the caching allocator's max allocated / max reserved since the stats were reset, and the device's
  used memory (CUDA context included) from the driver.
- CPU: the c10 CPU allocator's allocation events, seen through torch.profiler(profile_memory=True) which is
  started before the model is materialized, so the running sum of the training thread's events is its live
  tensor bytes; the maximum inside the memory step is the peak.  RSS high-water mark (VmHWM, reset through
  /proc/self/clear_refs) gives the whole-process figure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

WINDOW = "spacetime::memory_step"

# Dense peak FLOP/s by (device-name fragment, dtype), from vendor datasheets (no sparsity).  Only devices
# listed here get an MFU; anything else records null rather than a guessed figure.
PEAK_FLOPS: dict[tuple[str, str], float] = {
    ("H200", "fp32"): 67e12, ("H200", "bf16"): 989e12,
    ("H100 NVL", "fp32"): 60e12, ("H100 NVL", "bf16"): 835e12,
    ("H100 PCIe", "fp32"): 51e12, ("H100 PCIe", "bf16"): 756e12,
    ("H100", "fp32"): 67e12, ("H100", "bf16"): 989e12,
    ("A100", "fp32"): 19.5e12, ("A100", "bf16"): 312e12,
    ("L40S", "fp32"): 91.6e12, ("L40S", "bf16"): 362e12,
}


def peak_flops(device_name: str, dtype: str = "fp32") -> float | None:
    for (fragment, kind), flops in PEAK_FLOPS.items():  # first match wins: specific names come first
        if fragment in device_name and kind == dtype:
            return flops
    return None


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[Any], torch.Tensor], batches: Sequence[Any],
               device: torch.device) -> tuple[list[float], torch.Tensor | None]:
    """Run one step per batch; return the wall seconds of each and the last loss."""
    durations, loss = [], None
    for batch in batches:
        synchronize(device)
        start = time.perf_counter()
        loss = step(batch)
        synchronize(device)
        durations.append(time.perf_counter() - start)
    return durations, loss


def reset_rss_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not permitted: VmHWM then covers the whole process lifetime


def rss_peak_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class CpuMemoryProbe:
    """Peak live bytes of the CPU allocator inside `window()`, from profiler allocation events."""

    def __init__(self) -> None:
        self._prof: Any = None

    def start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._prof.__enter__()

    @contextmanager
    def window(self) -> Iterator[None]:
        with torch.profiler.record_function(WINDOW):
            yield

    def stop(self) -> dict[str, int | None]:
        self._prof.__exit__(None, None, None)
        events = self._prof.profiler.kineto_results.events()
        marks = [e for e in events if e.name() == WINDOW]
        if not marks:
            return {"alloc_peak_bytes": None, "reserved_peak_bytes": None, "device_used_bytes": None}
        mark = marks[-1]
        # The training program's own thread only: gloo's worker threads allocate scratch buffers whose
        # lifetimes depend on thread timing, the CPU analogue of NCCL's internal buffers, which CUDA's
        # allocator statistics do not count either.  They still show in the RSS figure.
        memory = sorted((e.start_ns(), e.nbytes()) for e in events
                        if e.name() == "[memory]" and e.start_thread_id() == mark.start_thread_id())
        window = (mark.start_ns(), mark.start_ns() + mark.duration_ns())
        return {"alloc_peak_bytes": window_peak(memory, window),
                "reserved_peak_bytes": None, "device_used_bytes": None}


def window_peak(memory: Sequence[tuple[int, int]], window: tuple[int, int]) -> int:
    """Max of the running sum of (time, +/-bytes) events, over the times inside `window` (inclusive)."""
    live, peak = 0, None
    start, end = window
    for ts, delta in memory:
        if ts > end:
            break
        if ts >= start and peak is None:
            peak = live  # level when the window opened
        live += delta
        if ts >= start:
            peak = max(peak, live)  # type: ignore[type-var]
    return live if peak is None else peak


class CudaMemoryProbe:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> None:
        pass

    @contextmanager
    def window(self) -> Iterator[None]:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        yield
        torch.cuda.synchronize(self.device)

    def stop(self) -> dict[str, int | None]:
        used: int | None
        try:
            used = int(torch.cuda.device_memory_used(self.device))
        except Exception:  # no NVML: total minus free as the driver sees it
            free, total = torch.cuda.mem_get_info(self.device)
            used = int(total - free)
        return {"alloc_peak_bytes": int(torch.cuda.max_memory_allocated(self.device)),
                "reserved_peak_bytes": int(torch.cuda.max_memory_reserved(self.device)),
                "device_used_bytes": used}


def memory_probe(device: torch.device) -> CpuMemoryProbe | CudaMemoryProbe:
    return CudaMemoryProbe(device) if device.type == "cuda" else CpuMemoryProbe()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
