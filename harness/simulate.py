"""simulate: the real training step under fake tensors and a fake process group (`spacetime simulate`).

One CPU process plays rank 0 of a world of any size: the zoo model, the strategy's own `wrap`, the real
optimizer and two steps run under `FakeTensorMode` (shapes and dtypes, no storage) with the "fake" process
group (collectives return at once).  torch's MemTracker follows every tensor storage the step creates and
frees and files it as a parameter, gradient, optimizer state, activation (made in forward) or temporary
(made in backward): FSDP's gathered parameters count as parameters, DDP's buckets and reduce-scatter
buffers as temporaries.  Two steps run; the peak is taken over the second, once optimizer state exists,
as the measured runs take theirs after warm-up.  (An optimizer step on zero gradients instead of the
first step saves 15% of the time but moves the peak by up to 0.45%: the first real step leaves state
behind that the second one's peak includes.)

What fake tensors cannot run, and what is done instead (`fake_ddp`):
- DDP's constructor compares parameter shapes across ranks and broadcasts parameters by reading their
  data: both are skipped (every simulated rank has the same shapes and values by construction).
- DDP's reducer rebuilds its buckets after the first step from ranks' gradient order, read from data:
  it keeps the buckets it built at construction (same total size, one bucket may differ in order).
- DDP's all-reduce becomes a comm hook that completes at once in place, as gloo/NCCL reduce in place.
A CUDA target (`device="cuda"`) is simulated on fake CPU tensors with CUDA's differences applied: each
allocation rounded up to 512 bytes, AdamW's foreach implementation (CUDA's default), and the CUDA context.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from harness.predict import CATEGORIES, CUDA_CONTEXT_BYTES, PeakFigures
from harness.spec import RunSpec, Unsupported
from harness.world import World

# MemTracker's categories -> the breakdown keys `estimate` uses
CATEGORY = {"Parameter": "params", "Buffer": "params", "Gradient": "grads", "Optstate": "optimizer",
            "Activation": "activations", "Temp": "temporaries", "Other": "temporaries"}
STEPS = 2
CANNOT = {  # knob values the simulator cannot run, and why
    "quant": "bitsandbytes quantizes real weights in its own CUDA/C++ kernels, which fake tensors cannot enter",
    "optimizer=adamw8bit": "torchao's 8-bit AdamW quantizes state blocks through real data",
    "optimizer=adafactor": "torch's Adafactor reads a value on the host each step (.item()), which fake tensors lack",
    "dtype=fp16": "the gradient scaler skips or takes each step from an inf check it reads on the host",
}


@dataclass
class Simulation(PeakFigures):
    spec: RunSpec
    breakdown: dict[str, int]  # bytes per rank at the peak, by `estimate`'s categories
    seconds: float
    rss_peak_bytes: int  # this process's high-water mark (imports included)

    def to_json(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "device_bytes": self.device_bytes,
                "breakdown": dict(self.breakdown), "seconds": round(self.seconds, 3),
                "rss_peak_bytes": self.rss_peak_bytes}


class FakeWorld(World):
    """Rank 0 of the fake process group, on the CPU; meshes are built outside fake mode (see real_meshes)."""

    def mesh(self, shape: tuple[int, ...], names: tuple[str, ...]) -> Any:
        from torch._subclasses.fake_tensor import unset_fake_temporarily
        from torch.distributed.device_mesh import init_device_mesh

        with unset_fake_temporarily():
            return init_device_mesh("cpu", shape, mesh_dim_names=names)


@contextmanager
def real_meshes() -> Iterator[None]:
    """DeviceMesh computes rank coordinates from a real tensor (nonzero), so every mesh, including the 2D
    one FSDP2 builds from dp and tp meshes, is constructed outside fake mode."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    from torch.distributed.device_mesh import DeviceMesh

    original = DeviceMesh.__init__

    def init(self: DeviceMesh, *args: Any, **kwargs: Any) -> None:
        with unset_fake_temporarily():
            original(self, *args, **kwargs)

    DeviceMesh.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        DeviceMesh.__init__ = original  # type: ignore[method-assign]


def check_simulable(spec: RunSpec) -> None:
    """Raise Unsupported for a strategy or knob the simulator cannot run (before anything is built)."""
    from strategies import get_strategy

    strategy = get_strategy(spec.strategy)
    if strategy.simulate_why_not:
        raise Unsupported(f"cannot simulate {spec.strategy}: {strategy.simulate_why_not}")
    for key, reason in CANNOT.items():
        field, _, value = key.partition("=")
        current = getattr(spec, field)
        if (value and current == value) or (not value and current not in ("none", 0, "off")):
            raise Unsupported(f"cannot simulate --{field.replace('_', '-')} {current}: {reason}")


@contextmanager
def fake_world(spec: RunSpec) -> Iterator[FakeWorld]:
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RuntimeError("simulate needs a process of its own: a process group is already initialized")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=spec.nproc)
    try:
        yield FakeWorld(0, 0, spec.nproc, torch.device("cpu"), "fake")
    finally:
        dist.destroy_process_group()


@contextmanager
def fake_ddp() -> Iterator[None]:
    """DDP's constructor without its data-reading cross-rank checks (see the module docstring)."""
    import torch.nn.parallel.distributed as ddp_module

    saved = ddp_module._verify_param_shape_across_processes, ddp_module._sync_module_states
    ddp_module._verify_param_shape_across_processes = lambda *a, **k: None
    ddp_module._sync_module_states = lambda *a, **k: None
    try:
        yield
    finally:
        ddp_module._verify_param_shape_across_processes, ddp_module._sync_module_states = saved


class _KeepBuckets:
    """DDP's reducer, minus the bucket rebuild that reads other ranks' gradient order."""

    def __init__(self, reducer: Any) -> None:
        self._reducer = reducer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reducer, name)

    def _rebuild_buckets(self) -> bool:
        return False


def _adapt_ddp(model: nn.Module) -> None:
    from torch.nn.parallel import DistributedDataParallel

    for module in model.modules():
        if isinstance(module, DistributedDataParallel):
            def in_place(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks real annotations
                done: torch.futures.Future[torch.Tensor] = torch.futures.Future()
                done.set_result(bucket.buffer())
                return done

            module.register_comm_hook(None, in_place)
            module.reducer = _KeepBuckets(module.reducer)  # type: ignore[assignment]


@contextmanager
def gloo_reduce_scatter(on: bool) -> Iterator[None]:
    """gloo's reduce-scatter works on a copy of its whole input, held while the collective runs (measured:
    a 187.5 MiB input adds a 187.5 MiB buffer); the fake process group allocates nothing, so on a CPU
    target the copy is made explicitly.  NCCL reduces from the input itself."""
    if not on:
        yield
        return
    original = dist.reduce_scatter_single

    def with_copy(output: torch.Tensor, input: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        scratch = torch.empty_like(input)
        work = original(output, input, *args, **kwargs)
        del scratch
        return work

    dist.reduce_scatter_single = with_copy  # type: ignore[assignment]
    try:
        yield
    finally:
        dist.reduce_scatter_single = original  # type: ignore[assignment]


@contextmanager
def cuda_rounding(on: bool) -> Iterator[None]:
    """Count every storage as CUDA's caching allocator would: rounded up to 512 bytes."""
    from torch.distributed._tools import mem_tracker

    if not on:
        yield
        return
    original = mem_tracker._WeakRefInfo._calculate_mem_consumed

    def rounded(info: Any) -> int:
        return -(-info.size * info.element_size // 512) * 512

    mem_tracker._WeakRefInfo._calculate_mem_consumed = rounded  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        mem_tracker._WeakRefInfo._calculate_mem_consumed = original  # type: ignore[method-assign]


def _tracker(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> Any:
    """torch's MemTracker, which hooks only trainable parameters' gradients (its own hooks every parameter,
    and a frozen one under LoRA cannot take a hook).  FSDPMemTracker is not used: its FSDP instrumentation
    keeps buffers alive longer than FSDP does (measured on HSDP, 125m: 2327.6 MiB with it, 2261.2 without,
    2261.2 measured), and the simulation has to match the program, not the instrumented one."""
    from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker, _MemRefType

    class TrainableOnly(MemTracker):
        def _track_module_params_and_buffers(self, module: nn.Module,
                                             install_grad_hooks: bool = True) -> tuple[int, int]:
            sizes = super()._track_module_params_and_buffers(module, install_grad_hooks=False)
            for param in module.parameters() if install_grad_hooks else ():
                if param.requires_grad and self._param_to_grad_hook_handles.get(param, None) is None:
                    def grad_seen(grad: torch.Tensor) -> None:
                        self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

                    self._param_to_grad_hook_handles[param] = (
                        param.register_hook(grad_seen),
                        param.register_post_accumulate_grad_hook(lambda p: grad_seen(p.grad)))
            return sizes

        def _pre_fw_hook(self, module: nn.Module, inputs: Any) -> None:
            # the root called again in forward is the next micro-batch (--grad-accum), not the next step:
            # start the per-module stats afresh, which MemTracker otherwise refuses
            name = self._mod_tracker.get_known_fqn(module)
            if (module in self.memory_tracking and not self._mod_tracker.is_bw
                    and set(self._mod_tracker.parents) - {name} == {"Global"}):
                self.memory_tracking.clear()
            super()._pre_fw_hook(module, inputs)

        def _update_peak_stats(self, peak_state: Any) -> None:
            # only the whole-process peak: the per-module peaks MemTracker also keeps cost a pass over every
            # module per op (80% of a 125m simulation's time)
            for device, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(device, 0) < snap[_TOTAL_KEY]:
                    self._peak_mem[device] = snap[_TOTAL_KEY]
                    self._peak_mem_snap[device] = dict(snap)

    tracker = TrainableOnly()
    tracker.track_external(model, *([optimizer] if optimizer is not None else []))
    return tracker


def _breakdown(snapshot: dict[torch.device, dict[Any, int]], device: str) -> dict[str, int]:
    out = dict.fromkeys(CATEGORIES, 0)
    for per_device in snapshot.values():
        for kind, nbytes in per_device.items():
            name = getattr(kind, "value", kind)
            if name != "Total":
                out[CATEGORY.get(name, "temporaries")] += nbytes
    out["context"] = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    return out


def simulate(spec: RunSpec, device: str = "cpu") -> Simulation:
    """Rank 0's peak of one training step of `spec` on `device` ("cpu" or "cuda")."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from harness.adapters import param_dtype
    from harness.training import make_optimizer_factory
    from harness.zoo import build_model, config_for
    from strategies import get_strategy

    check_simulable(spec)
    started = time.perf_counter()
    strategy = get_strategy(spec.strategy)
    cfg = config_for(spec)
    model = build_model(cfg, spec.seq_len).to(param_dtype(spec))  # meta, outside fake mode
    factory = make_optimizer_factory(spec, foreach=True if device == "cuda" else None)
    with fake_world(spec) as world, fake_ddp(), real_meshes(), cuda_rounding(device == "cuda"), \
            gloo_reduce_scatter(device == "cpu"), FakeTensorMode(allow_non_fake_inputs=True):
        prepared = strategy.wrap(model, factory, world, spec)
        _adapt_ddp(prepared.model)
        rows = spec.batch_size * spec.grad_accum
        tokens = torch.randint(0, cfg.vocab_size, (rows, spec.seq_len + 1))
        batch = (tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())
        tracker = _tracker(prepared.model, prepared.optimizer)
        for _ in range(STEPS):
            with tracker:  # entering resets the peak to what is live now
                prepared.step(batch)
            tracker.reset_mod_stats()
        snapshot = tracker.get_tracker_snapshot("peak")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return Simulation(spec, _breakdown(snapshot, device), time.perf_counter() - started, rss)
