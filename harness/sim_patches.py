"""What fake tensors and the fake process group cannot run, and what `simulate` does instead.

Each stand-in is a context manager (or an adapter) that changes nothing a real run allocates:
- meshes are built outside fake mode (DeviceMesh reads a real tensor for its rank coordinates);
- DDP's constructor compares parameter shapes across ranks and broadcasts parameters by reading their
  data: both are skipped (every simulated rank has the same shapes and values by construction); its
  reducer would rebuild its buckets after the first step from ranks' gradient order, read from data: it
  keeps the buckets it built (same total size, one bucket may differ in order); its all-reduce is a comm
  hook that completes at once in place, as gloo and NCCL reduce in place;
- gloo's all-gather and reduce-scatter get the buffers gloo makes inside them (CPU targets only);
- DTensor's sharding propagation gets a fake mode of its own and linear-time foreach handling;
- a CUDA target counts every storage rounded up to 512 bytes, as CUDA's caching allocator does;
- profiler annotations (FSDP's `record_function` ranges) are not dispatched: each one went through the
  tracker and fake mode as an op, 12% of a 7b FSDP2 + TP simulation, and none holds a tensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


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


def adapt_ddp(model: nn.Module) -> None:
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
def gloo_buffers(on: bool) -> Iterator[None]:
    """The buffers gloo allocates inside its collectives, where neither the dispatcher nor the fake process
    group sees them, made explicitly on a CPU target for the length of the call (NCCL works in place):
    - all-gather gathers into a flat buffer the size of its output and copies out (measured, 2 ranks: an
      8 MiB input into a 16 MiB output adds 16 MiB while it runs, fp32 and bf16, sync and async);
    - reduce-scatter works on a copy of its whole input (measured: a 187.5 MiB input adds 187.5 MiB).
    """
    if not on:
        yield
        return
    saved = dist.all_gather_single, dist.reduce_scatter_single

    def with_scratch(collective: Any, like_output: bool) -> Any:
        def call(output: torch.Tensor, input: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            scratch = torch.empty_like(output if like_output else input)
            work = collective(output, input, *args, **kwargs)
            del scratch
            return work

        return call

    dist.all_gather_single = with_scratch(saved[0], like_output=True)
    dist.reduce_scatter_single = with_scratch(saved[1], like_output=False)
    try:
        yield
    finally:
        dist.all_gather_single, dist.reduce_scatter_single = saved


def _strided_verdict(op_schema: Any) -> Any:
    """A one-argument stand-in for a foreach op's schema, carrying the _StridedShard flag that torch's loop
    over every argument of the op ends with (None when no argument has a _StridedShard placement)."""
    from torch.distributed.tensor.placement_types import _StridedShard

    verdict, placements = None, None
    for spec in op_schema.args_spec:
        if any(isinstance(p, _StridedShard) for p in spec.placements):
            flag = spec.use_strided_shard_as_shard_order  # torch's own reduction, step by step
            verdict = True if verdict is not None and verdict != flag else flag
            placements = spec.placements
    if verdict is None:
        return None
    return SimpleNamespace(args_spec=(SimpleNamespace(placements=placements,
                                                      use_strided_shard_as_shard_order=verdict),))


def _once_per_op(reconcile: Any) -> Any:
    last: list[Any] = [None, None]  # the op schema seen last, and its verdict

    def strided_flag(op_strategy: Any, op_schema: Any) -> None:
        if last[0] is not op_schema:
            last[:] = [op_schema, _strided_verdict(op_schema)]
        if last[1] is not None:
            reconcile(op_strategy, last[1])

    return strided_flag


def _skip_void(propagate: Any) -> Any:
    def tensor_meta(self: Any, op_schema: Any) -> Any:
        if not op_schema.op._schema.returns:
            return None  # what running it gives: in-place foreach ops return nothing
        return propagate(self, op_schema)

    return tensor_meta


def _memoized(expand: Any) -> Any:
    memo: dict[Any, Any] = {}

    def hashable(value: Any) -> Any:
        return tuple(map(hashable, value)) if isinstance(value, list | tuple) else value

    def expanded(mesh: Any, op_schema: Any, strategies: Any, **kwargs: Any) -> Any:
        key = (mesh, op_schema, hashable(strategies), hashable(sorted(kwargs.items())))
        try:
            found = memo.get(key)
        except TypeError:  # unhashable metadata (symbolic shapes): no memo
            return expand(mesh, op_schema, strategies, **kwargs)
        if found is None:
            found = memo[key] = expand(mesh, op_schema, strategies, **kwargs)
        return found

    return expanded


@contextmanager
def dtensor_propagation(speedups: bool = True) -> Iterator[None]:
    """Four changes to DTensor's sharding propagation; none changes what a step allocates, the last three
    take a foreach op over n tensors (AdamW's first step) from O(n^2) or n full expansions to O(n).

    - It finds output shapes by running each new op on global-shape tensors under the active fake mode, or
      a fresh one when none is (a real run).  Here it would find the simulation's mode, and the tracker
      would count those global-shape tensors (a whole 7b model for a foreach AdamW op) as memory: it gets a
      fake mode of its own, as in a real run.
    - It reconciles every element's strategy with the _StridedShard flag of the whole argument list, which
      it re-reads per element (3 s of 7b's first AdamW step under FSDP2, 7 s under FSDP2+TP): the list's
      verdict is reached once per op (`_strided_verdict`).
    - Ops that return nothing (in-place foreach) still run on global-shape fake tensors to find no output
      shape: they are answered None, as running them answers.
    - Each element's strategy is expanded over the mesh, though a model's elements have a handful of
      distinct shapes: expansions are memoized on everything they read (mesh, element schema, strategies).
    `speedups=False` keeps only the first (tests compare the two).
    """
    import torch.distributed.tensor._ops.utils as op_utils
    import torch.distributed.tensor._sharding_prop as prop
    from torch._subclasses.fake_tensor import FakeTensorMode

    own_mode = FakeTensorMode(allow_non_fake_inputs=True)
    propagator = prop.ShardingPropagator
    saved = (prop.detect_fake_mode, prop._propagate_use_strided_shard_flag,
             propagator._propagate_tensor_meta_non_cached, op_utils.expand_to_full_mesh_op_strategy)
    prop.detect_fake_mode = lambda *args: own_mode
    if speedups:
        prop._propagate_use_strided_shard_flag = _once_per_op(saved[1])
        propagator._propagate_tensor_meta_non_cached = _skip_void(saved[2])  # type: ignore[method-assign]
        op_utils.expand_to_full_mesh_op_strategy = _memoized(saved[3])
    try:
        yield
    finally:
        (prop.detect_fake_mode, prop._propagate_use_strided_shard_flag,
         propagator._propagate_tensor_meta_non_cached,  # type: ignore[method-assign]
         op_utils.expand_to_full_mesh_op_strategy) = saved


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


@contextmanager
def quiet_profiler() -> Iterator[None]:
    """`torch.profiler.record_function` ranges as no-ops: they name time in a trace and hold no memory."""
    from torch.autograd import profiler

    saved = profiler.record_function.__enter__, profiler.record_function.__exit__
    profiler.record_function.__enter__ = lambda self: self  # type: ignore[method-assign]
    profiler.record_function.__exit__ = lambda self, *exc: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        profiler.record_function.__enter__, profiler.record_function.__exit__ = saved  # type: ignore[method-assign]
