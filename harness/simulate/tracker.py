"""The memory tracker `simulate` runs: torch's MemTracker, changed for accuracy and time (see `Tracker`), filing
every storage by the categories `estimate` uses (docs/estimate.md, "What each category holds").

MemTracker follows every tensor storage a step creates and frees and files it as a parameter, gradient,
optimizer state, activation (made in forward) or temporary (made in backward).  `Tracker` adds the
communication buffers: DDP's buckets, the parameters FSDP gathers (any storage a module's parameters take
other than the rank's own), what an in-place collective or FSDP's copy into or out of one reads or writes,
and gloo's scratch copies.  A reduce-scatter's output is the gradient shard it makes; what the optimizer
step makes is a temporary unless it becomes optimizer state.  FSDPMemTracker is not used: its FSDP
instrumentation keeps buffers alive longer than FSDP does (measured on HSDP, 125m: 2327.6 MiB with it, 2261.2
without, 2261.2 measured), and the simulation has to match the program, not the instrumented one.
"""

from __future__ import annotations

import importlib.util
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
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
from torch.distributed._tools.common_utils import get_untyped_storages  # noqa: E402
from torch.distributed._tools.mem_tracker import (  # noqa: E402
    _TOTAL_KEY,
    MemTracker,
    _MemRefType,
    _RefType,
    _UpdateType,
)

_DEVICE = torch.ops.prim.device.default
_WAIT = torch.ops._c10d_functional.wait_tensor.default
COLLECTIVE_NAMESPACES = ("c10d", "fsdp")  # in-place collectives, and FSDP's copies into and out of them
_REDUCE_SCATTERS = (torch.ops.c10d._reduce_scatter_base_.default, torch.ops.c10d.reduce_scatter_.default)


class CommRefType(_RefType):
    COMM = "Comm"  # a buffer that exists for communication


COMM = CommRefType.COMM
_OWNED = (_MemRefType.BUFFER, _MemRefType.GRAD, _MemRefType.OPT)  # what a collective's use does not relabel


class Tracker(MemTracker):
    """MemTracker, changed where it would cost the simulation its accuracy or its time.

    - Gradient hooks go on trainable leaf parameters only (MemTracker hooks every one, and a frozen one
      under LoRA cannot take a hook, nor can FSDP1's parameters, views into its flat parameters while a
      unit runs: the flat parameters take them).
    - The communication category above, and the optimizer step's own tensors filed as temporaries (MemTracker
      files everything the step makes as optimizer state, its foreach intermediates included).
    - The root called again in forward is the next micro-batch (--grad-accum), not the next step: the
      per-module state starts afresh, where MemTracker refuses.
    - Only the whole-process peak is kept: MemTracker also keeps every module's (a pass over all modules
      per op: 80% of a 125m simulation's time) and snapshots at every module hook.  Its per-op dispatch
      answers device queries at once (the autograd engine asks for every gradient's: 20k a 7b step) and
      builds no dict per allocation.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ref_class = (*_MemRefType, COMM)  # type: ignore[assignment]  # the snapshot's keys
        self._resident: set[Any] = set()  # the rank's own parameters' storage records
        self._making_comm = False

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # never compiled: no per-op wrapper turning dynamo off and on again

    def track_resident(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        """`model`'s parameters and buffers as they are between steps (shards, under FSDP) are the rank's own:
        any other storage a module's parameters take while it runs is a gathered copy, a communication buffer.
        The gradients FSDP2 sets on them after a reduce-scatter are filed as gradients (it calls their
        post-accumulate hooks), and so is every gradient the optimizer reads when its step starts."""
        self.track_external(model)
        self._resident = {winfo for winfo, _ in self._WINFO.values()}
        self._hook_grads(model.parameters())
        if optimizer is not None:
            self.track_external(optimizer)
            optimizer.register_step_pre_hook(lambda opt, args, kwargs: self._file_grads(opt))

    @contextmanager
    def making_comm(self) -> Iterator[None]:
        """What is made inside is a communication buffer (gloo's scratch)."""
        self._making_comm = True
        try:
            yield
        finally:
            self._making_comm = False

    def mark_comm(self, tensor: torch.Tensor) -> None:
        """File `tensor`'s storages as communication buffers (DDP's buckets, gloo's scratch, what a collective
        reads or writes), unless they are the rank's own parameters, gradients or optimizer state."""
        self._relabel(tensor, COMM, _OWNED)

    def mark_grad_shard(self, output: Any) -> None:
        """A reduce-scatter's output is the gradient shard it makes, from the moment it is allocated."""
        for tensor in tree_leaves(output):
            self._relabel(tensor, _MemRefType.GRAD, ())

    def _relabel(self, tensor: torch.Tensor, reftype: Any, keep: tuple[Any, ...]) -> None:
        for storage in get_untyped_storages(tensor):
            winfo, _ = self._WINFO.get(storage, (None, None))  # a storage not tracked (yet) is left alone
            if winfo is None or winfo.reftype is reftype or winfo.reftype in keep or winfo in self._resident:
                continue
            old, winfo.reftype = winfo.reftype, reftype
            self._update_snap(_UpdateType.REF, winfo, old_reftype=old)

    def _file_grads(self, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._relabel(param.grad, _MemRefType.GRAD, ())

    def _hook_grads(self, params: Any) -> None:
        for param in params:
            if param.requires_grad and param.is_leaf and self._param_to_grad_hook_handles.get(param, None) is None:
                def grad_seen(grad: torch.Tensor) -> None:
                    self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

                self._param_to_grad_hook_handles[param] = (
                    param.register_hook(grad_seen),
                    param.register_post_accumulate_grad_hook(lambda p: grad_seen(p.grad)))

    def _track_module_params_and_buffers(self, module: nn.Module,
                                         install_grad_hooks: bool = True) -> tuple[int, int]:
        sizes = super()._track_module_params_and_buffers(module, install_grad_hooks=False)
        if install_grad_hooks:  # the module about to run
            for param in module.parameters():  # gathered (unsharded) parameters are communication buffers
                self.mark_comm(param)
            handle = getattr(module, "_handle", None)  # an FSDP1 unit: its flat parameter takes the gradients
            self._hook_grads([*module.parameters(), *([handle.flat_param] if handle is not None else [])])
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
            kind = (COMM if self._making_comm else
                    _MemRefType.TEMP if self._in_opt or (self._mod_tracker.is_bw and not self._in_ac)
                    else _MemRefType.ACT)  # optimizer state is filed as such by the step's post-hook
            for tensor in (out,) if isinstance(out, torch.Tensor) else tree_leaves(out):
                if isinstance(tensor, torch.Tensor):
                    self._track(kind, tensor)
            if getattr(func, "namespace", None) in COLLECTIVE_NAMESPACES:
                if func in _REDUCE_SCATTERS:
                    self.mark_grad_shard(args[0])
                for tensor in tree_leaves((args, kwargs, out)):
                    if isinstance(tensor, torch.Tensor):
                        self.mark_comm(tensor)
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
