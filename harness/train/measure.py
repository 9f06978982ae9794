"""Timers, memory probes and FLOP/MFU arithmetic used by the worker.

Memory is measured in a dedicated step, time in other steps, so profiling never slows a timed step.
- CUDA: the caching allocator's max allocated / max reserved since the stats were reset, and the device's
  used memory (CUDA context included) from the driver.
- CPU: a counting CPU allocator (harness/train/cpu_allocator.py) installed before the model is materialized gives
  the training thread's live tensor bytes and their peak, like CUDA's max allocated.  RSS high-water mark
  (VmHWM, reset through /proc/self/clear_refs) gives the whole-process figure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from harness.core.host import cpu_model
from harness.train.cpu_allocator import counting_allocator

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
    """Peak live tensor bytes of the training thread over the `window()`s, from the counting CPU allocator
    (installed by `start()`, before the model is materialized)."""

    def __init__(self) -> None:
        self._peak: int | None = None

    def start(self) -> None:
        counting_allocator().install()

    @contextmanager
    def window(self) -> Iterator[None]:
        counter = counting_allocator()
        counter.reset_peak()
        yield
        self._peak = max(self._peak or 0, int(counter.peak_bytes()))

    def stop(self) -> dict[str, int | None]:
        return {"alloc_peak_bytes": self._peak, "reserved_peak_bytes": None, "device_used_bytes": None}


class CudaMemoryProbe:
    """The caching allocator's max allocated / max reserved over the `window()`s, and the driver's view of
    the device's used memory (CUDA context and other processes included) at the end."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._allocated: int | None = None
        self._reserved: int | None = None

    def start(self) -> None:
        pass

    @contextmanager
    def window(self) -> Iterator[None]:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        yield
        torch.cuda.synchronize(self.device)
        self._allocated = max(self._allocated or 0, int(torch.cuda.max_memory_allocated(self.device)))
        self._reserved = max(self._reserved or 0, int(torch.cuda.max_memory_reserved(self.device)))

    def stop(self) -> dict[str, int | None]:
        used: int | None
        try:
            used = int(torch.cuda.device_memory_used(self.device))
        except Exception:  # no NVML: total minus free as the driver sees it
            free, total = torch.cuda.mem_get_info(self.device)
            used = int(total - free)
        return {"alloc_peak_bytes": self._allocated, "reserved_peak_bytes": self._reserved,
                "device_used_bytes": used}


def memory_probe(device: torch.device) -> CpuMemoryProbe | CudaMemoryProbe:
    return CudaMemoryProbe(device) if device.type == "cuda" else CpuMemoryProbe()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()
