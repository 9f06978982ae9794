"""What fake tensors and the fake process group cannot run, and what `simulate` does instead.

Each stand-in is a context manager (or an adapter) that changes nothing a real run allocates:
- meshes are built outside fake mode (DeviceMesh reads a real tensor for its rank coordinates);
- DDP's constructor compares parameter shapes across ranks and broadcasts parameters by reading their
  data: both are skipped (every simulated rank has the same shapes and values by construction); its
  reducer would rebuild its buckets after the first step from ranks' gradient order, read from data: it
  keeps the buckets it built (same total size, one bucket may differ in order); its all-reduce is a comm
  hook that completes at once in place, as gloo and NCCL reduce in place;
- gloo's all-gather and reduce-scatter get the buffers gloo makes inside them (CPU targets only);
- DTensor's sharding propagation gets a fake mode of its own and linear-time foreach handling
  (harness/simulate/dtensor.py);
- a CUDA target counts every storage rounded up to 512 bytes, as CUDA's caching allocator does;
- FSDP2's `fully_shard` and TP's `parallelize_module` run outside fake mode, on the meta model, as they do in
  a real run (fake mode would turn each meta op into a fake one: 2.5 s of a 7b FSDP2 simulation);
- fake storages have no data, so every data pointer reads 0: FSDP1's checks of whether a storage is
  allocated and whether two tensors share one (data-pointer comparisons) get an address per storage;
- profiler annotations (FSDP's `record_function` ranges) are not dispatched: each one went through the
  tracker and fake mode as an op, 12% of a 7b FSDP2 + TP simulation, and none holds a tensor;
- bitsandbytes' quantized layers (`--quant int8|nf4`) hold plain parameters of their packed bytes and their
  quant state instead of Params4bit / Int8Params (harness/simulate/quant_stand_ins.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def outside_fake_mode(function: Any) -> Any:
    """`function` run with fake mode set aside: what must see real (or meta) tensors while the step is faked.  It
    keeps `function`'s attributes (`fully_shard.state`, which a module imported under the stand-ins reads)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        with unset_fake_temporarily():
            return function(*args, **kwargs)

    return call


@contextmanager
def real_meshes() -> Iterator[None]:
    """DeviceMesh computes rank coordinates from a real tensor (nonzero), so every mesh, including the 2D
    one FSDP2 builds from dp and tp meshes, is constructed outside fake mode."""
    from torch.distributed.device_mesh import DeviceMesh

    original = DeviceMesh.__init__
    DeviceMesh.__init__ = outside_fake_mode(original)  # type: ignore[method-assign]
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


def adapt_ddp(model: nn.Module, reduced: Callable[[torch.Tensor], None]) -> None:
    """DDP's reducer without its bucket rebuild, and an all-reduce that completes in place; `reduced(buffer)`
    is told of each bucket it reduces."""
    from torch.nn.parallel import DistributedDataParallel

    for module in model.modules():
        if isinstance(module, DistributedDataParallel):
            def in_place(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks real annotations
                reduced(bucket.buffer())
                done: torch.futures.Future[torch.Tensor] = torch.futures.Future()
                done.set_result(bucket.buffer())
                return done

            module.register_comm_hook(None, in_place)
            module.reducer = _KeepBuckets(module.reducer)  # type: ignore[assignment]


@contextmanager
def gloo_buffers(on: bool, comm: Callable[[], AbstractContextManager[Any]],
                 shard: Callable[[torch.Tensor], None]) -> Iterator[None]:
    """The buffers gloo allocates inside its collectives, where neither the dispatcher nor the fake process
    group sees them, made explicitly on a CPU target for the length of the call (NCCL works in place):
    - all-gather gathers into a flat buffer the size of its output and copies out (measured, 2 ranks: an
      8 MiB input into a 16 MiB output adds 16 MiB while it runs, fp32 and bf16, sync and async);
    - reduce-scatter works on a copy of its whole input (measured: a 187.5 MiB input adds 187.5 MiB).
    Each is made inside `comm()`, which files it as a communication buffer; a reduce-scatter's output, the
    gradient shard it makes, is passed to `shard` first.
    """
    if not on:
        yield
        return
    saved = dist.all_gather_single, dist.reduce_scatter_single

    def with_scratch(collective: Any, like_output: bool) -> Any:
        def call(output: torch.Tensor, input: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if not like_output:
                shard(output)
            with comm():
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


@contextmanager
def meta_sharding() -> Iterator[None]:
    """`fully_shard` and `parallelize_module` outside fake mode: on the meta model they only cut meta
    tensors into meta shards, as in a real run; `materialize` then allocates the shards under fake mode."""
    import torch.distributed.fsdp as fsdp
    import torch.distributed.tensor.parallel as tp

    saved = fsdp.fully_shard, tp.parallelize_module
    fsdp.fully_shard, tp.parallelize_module = outside_fake_mode(saved[0]), outside_fake_mode(saved[1])
    try:
        yield
    finally:
        fsdp.fully_shard, tp.parallelize_module = saved


@contextmanager
def storage_addresses() -> Iterator[None]:
    """A data pointer for every fake tensor and storage, as a real one would have: the storage's own address
    while it holds bytes, 0 once it is resized to nothing (FSDP1 frees a gathered flat parameter that way),
    plus the tensor's offset.  Meta storages read 0 whatever they hold, and FSDP1 compares data pointers to
    tell an allocated storage from a freed one and a view from a copy."""
    from torch._subclasses.fake_tensor import FakeTensor

    storage_pointer = torch.UntypedStorage.data_ptr

    def storage_address(storage: torch.UntypedStorage) -> int:
        if storage.device.type != "meta":
            return storage_pointer(storage)
        return storage._cdata if storage.nbytes() else 0

    def tensor_address(tensor: torch.Tensor) -> int:
        base = storage_address(tensor.untyped_storage())
        return base + int(tensor.storage_offset()) * tensor.element_size() if base else 0

    torch.UntypedStorage.data_ptr = storage_address  # type: ignore[method-assign, assignment]
    FakeTensor.data_ptr = tensor_address  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        torch.UntypedStorage.data_ptr = storage_pointer  # type: ignore[method-assign]
        del FakeTensor.data_ptr


def stand_ins(device: str, comm: Callable[[], AbstractContextManager[Any]],
              shard: Callable[[torch.Tensor], None]) -> list[AbstractContextManager[Any]]:
    """Every stand-in above, for a CUDA or CPU target, in the order `simulate` enters them (before fake mode);
    the communication buffers they make are made inside `comm()`, and `shard` is told of a reduce-scatter's
    output (gloo_buffers)."""
    from harness.simulate.dtensor import dtensor_propagation
    from harness.simulate.quant_stand_ins import quantized_stand_ins

    return [fake_ddp(), real_meshes(), cuda_rounding(device == "cuda"), gloo_buffers(device == "cpu", comm, shard),
            dtensor_propagation(), quiet_profiler(), meta_sharding(), storage_addresses(), quantized_stand_ins()]
