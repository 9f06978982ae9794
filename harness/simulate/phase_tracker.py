"""The tracker `simulate --workload generate` reads phase by phase (harness/simulate/generate_run.py): the live
total now, the peak since the last reset, and, on a CPU target, the scratch CPU kernels allocate while they run
(harness/simulate/cpu_scratch.py), alive for the length of the op, after its outputs exist, as in the kernel.

A view's strides are also put right where fake tensors get them wrong: the strides of a size-1 dimension of a
contiguous view (SDPA's output seen as (batch, 1, heads x head_dim) in a decode step) come out of fake mode from
the old shape (32 where a real view has 256), so `matmul` no longer folds the input into one `mm` and takes a
batched product over a broadcast weight instead, with its own scratch: a decode peak 1.7% off on `tiny`.  A real
view's contiguous strides are the ones given here."""

from __future__ import annotations

from typing import Any

import torch
from torch._guards import active_fake_mode

from harness.simulate.cpu_scratch import flash_scratch_bytes, is_scratch_matmul, matmul_scratch_bytes
from harness.simulate.tracker import _TOTAL_KEY, Tracker, _MemRefType

_CPU_FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default
_VIEWS = {torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default}


class PhaseTracker(Tracker):
    """The tracker, read per phase; `cpu_threads` > 0: a CPU target whose ranks run that many threads."""

    def __init__(self, cpu_threads: int = 0) -> None:
        super().__init__()
        self.cpu_threads = cpu_threads

    def now(self) -> int:
        return sum(int(snap[_TOTAL_KEY]) for snap in self._curr_mem_snap.values())

    def peak(self) -> int:
        return sum(int(v) for v in self._peak_mem.values())

    def reset_peak(self) -> None:
        self._peak_mem_snap = self.get_tracker_snapshot()
        self._peak_mem = {dev: snap[_TOTAL_KEY] for dev, snap in self._peak_mem_snap.items()}

    def _scratch(self, func: Any, args: Any) -> int:
        if not self.cpu_threads or active_fake_mode() is not self._fake_mode_on_entry:
            return 0
        if func is _CPU_FLASH:
            return flash_scratch_bytes(args[0], args[1], self.cpu_threads)
        if is_scratch_matmul(func, args):
            return matmul_scratch_bytes(func, args, self.cpu_threads)
        return 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _VIEWS:
            return _real_view_strides(super().__torch_dispatch__(func, types, args, kwargs))
        nbytes = self._scratch(func, args) if _no_dtensor(types) else 0
        if not nbytes:
            return super().__torch_dispatch__(func, types, args, kwargs)
        scratch = torch.empty(nbytes, dtype=torch.uint8, device=args[0].device)
        self._track(_MemRefType.TEMP, scratch)
        try:
            return super().__torch_dispatch__(func, types, args, kwargs)
        finally:
            del scratch  # freed as the kernel returns


def _no_dtensor(types: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return DTensor not in types


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _real_view_strides(out: Any) -> Any:
    """A contiguous view with the strides a real one has (see the module docstring)."""
    if not isinstance(out, torch.Tensor) or not out.is_contiguous():
        return out
    strides = _contiguous_strides(tuple(out.shape))
    return out if out.stride() == strides else out.as_strided(out.shape, strides, out.storage_offset())
