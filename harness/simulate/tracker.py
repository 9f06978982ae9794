"""The memory tracker `simulate` runs: torch's MemTracker with three changes (see `Tracker`).

MemTracker follows every tensor storage a step creates and frees and files it as a parameter, gradient,
optimizer state, activation (made in forward) or temporary (made in backward); FSDP's gathered parameters
count as parameters once their module runs.  FSDPMemTracker is not used: its FSDP instrumentation keeps
buffers alive longer than FSDP does (measured on HSDP, 125m: 2327.6 MiB with it, 2261.2 without, 2261.2
measured), and the simulation has to match the program, not the instrumented one.
"""

from __future__ import annotations

import importlib.util
import sys
import weakref
from typing import Any

import torch
import torch.distributed
from torch import nn
from torch._guards import active_fake_mode
from torch._subclasses.fake_tensor import FakeTensor
from torch.distributed.tensor import DTensor
from torch.utils._pytree import tree_leaves


def _tools_package_on_first_use() -> None:
    """Put `torch.distributed._tools` in place with its `__init__` deferred to the first use of one of its names.

    The `__init__` imports every tool in the package, among them the runtime estimator, which imports inductor:
    a second of a simulation's start here, for MemTracker alone.  Its submodules import as usual; the first
    name read from the package itself (`torch.distributed._tools.FSDPMemTracker`) runs the `__init__`."""
    name = "torch.distributed._tools"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None and spec.submodule_search_locations is not None
    package = importlib.util.module_from_spec(spec)

    def first_use(attr: str) -> Any:
        del package.__dict__["__getattr__"]
        spec.loader.exec_module(package)  # type: ignore[union-attr]
        return getattr(package, attr)

    package.__getattr__ = first_use  # type: ignore[method-assign]
    sys.modules[name] = package
    torch.distributed._tools = package  # type: ignore[attr-defined]


_tools_package_on_first_use()
from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker, _MemRefType, _UpdateType  # noqa: E402

_DEVICE = torch.ops.prim.device.default
_WAIT = torch.ops._c10d_functional.wait_tensor.default


class Tracker(MemTracker):
    """MemTracker, changed where it would cost the simulation its accuracy or its time.

    - Gradient hooks go on trainable leaf parameters only (MemTracker hooks every one, and a frozen one
      under LoRA cannot take a hook, nor can FSDP1's parameters, views into its flat parameters while a
      unit runs: the flat parameters take them; the sharded gradient FSDP1 then sets after its
      reduce-scatter is set without a hook, and counts as a temporary).
    - The root called again in forward is the next micro-batch (--grad-accum), not the next step: the
      per-module state starts afresh, where MemTracker refuses.
    - Only the whole-process peak is kept: MemTracker also keeps every module's (a pass over all modules
      per op: 80% of a 125m simulation's time) and snapshots at every module hook.  Its per-op dispatch
      answers device queries at once (the autograd engine asks for every gradient's: 20k a 7b step) and
      builds no dict per allocation.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # never compiled: no per-op wrapper turning dynamo off and on again

    def _track_module_params_and_buffers(self, module: nn.Module,
                                         install_grad_hooks: bool = True) -> tuple[int, int]:
        sizes = super()._track_module_params_and_buffers(module, install_grad_hooks=False)
        handle = getattr(module, "_handle", None)  # an FSDP1 unit: its flat parameter takes the gradients
        flat = [handle.flat_param] if handle is not None else []
        for param in [*module.parameters(), *flat] if install_grad_hooks else ():
            if param.requires_grad and param.is_leaf and self._param_to_grad_hook_handles.get(param, None) is None:
                def grad_seen(grad: torch.Tensor) -> None:
                    self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

                self._param_to_grad_hook_handles[param] = (
                    param.register_hook(grad_seen),
                    param.register_post_accumulate_grad_hook(lambda p: grad_seen(p.grad)))
        return sizes

    def _pre_fw_hook(self, module: nn.Module, inputs: Any) -> None:
        # MemTracker's, without the per-module snapshots (deep copies) only its per-module report reads
        fqn = self._mod_tracker.get_known_fqn(module)
        if (module in self.memory_tracking and not self._mod_tracker.is_bw
                and set(self._mod_tracker.parents) - {fqn} == {"Global"}):
            self.memory_tracking.clear()  # the root again in forward: the next micro-batch
        if module not in self.memory_tracking:  # first call this step: its parameters are parameters now
            self._track_module_params_and_buffers(module, install_grad_hooks=True)
            self.memory_tracking[module] = fqn
        elif self._mod_tracker.is_bw and self._ac_mod is None:  # forward again in backward: recomputation
            self._ac_mod = weakref.ref(module)
            self._in_ac = True

    def _post_fw_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        if self._mod_tracker.is_bw and self._ac_mod is not None and self._ac_mod() is module:
            self._ac_mod = None
            self._in_ac = False

    def _pre_bw_hook(self, module: nn.Module, args: Any) -> None:
        pass

    def _post_bw_hook(self, module: nn.Module, args: Any) -> None:
        pass

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if DTensor in types:
            return NotImplemented  # DTensor runs first and comes back with the local op
        if func is _DEVICE and isinstance(args[0], FakeTensor):
            return args[0].fake_device
        in_mode = active_fake_mode() is self._fake_mode_on_entry  # False in DTensor's own propagation
        if func is _WAIT and in_mode:
            return args[0]  # as MemTracker: the fake kernel would return a copy that eager never makes
        out = func(*args, **(kwargs or {}))
        if in_mode:
            kind = (_MemRefType.OPT if self._in_opt else
                    _MemRefType.TEMP if self._mod_tracker.is_bw and not self._in_ac else _MemRefType.ACT)
            for tensor in (out,) if isinstance(out, torch.Tensor) else tree_leaves(out):
                if isinstance(tensor, torch.Tensor):
                    self._track(kind, tensor)
            self._update_peak_stats(None)
        return out

    def _update_snap(self, u_type: Any, winfo: Any, old_mem_consumed: int | None = None,
                     old_reftype: Any = None) -> None:
        if u_type is not _UpdateType.ADD or winfo.device not in self._curr_mem_snap:
            return super()._update_snap(u_type, winfo, old_mem_consumed, old_reftype)
        snap = self._curr_mem_snap[winfo.device]
        snap[winfo.reftype] += winfo.mem_consumed
        snap[_TOTAL_KEY] += winfo.mem_consumed

    def _update_peak_stats(self, peak_state: Any) -> None:
        for device, snap in self._curr_mem_snap.items():
            if self._peak_mem.get(device, 0) < snap[_TOTAL_KEY]:
                self._peak_mem[device] = snap[_TOTAL_KEY]
                self._peak_mem_snap[device] = dict(snap)


def tracker_for(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> Tracker:
    tracker = Tracker()
    tracker.track_external(model, *([optimizer] if optimizer is not None else []))
    return tracker
