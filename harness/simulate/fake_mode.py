"""The fake tensor mode `simulate` runs under: torch's FakeTensorMode with a cheaper dispatch-cache key.

FakeTensorMode caches each op's output metadata under a key built from its arguments.  Building that key
is a third of a simulated op's cost on this CPU: every tensor argument becomes a TensorMetadata dataclass
whose shape and stride are flattened one integer at a time through a ten-way type test.  For the common
argument, a dense, non-symbolic FakeTensor of this mode without a constant, `SimFakeMode` puts a tuple of
the same metadata in the key instead (the memory format is left out: it is a function of the shape and
strides already there); anything else takes torch's own path.  Every such tuple follows a marker that
torch's keys never hold, so its keys cannot collide with a plain FakeTensorMode's in the cache the two
share.  The cache hits and misses are the same either way; tests/test_simulate.py compares every figure.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

_TENSOR = object()  # precedes a tensor's metadata in a key
_PLAIN = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format,
                    torch.layout})


class SimFakeMode(FakeTensorMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # never compiled: no per-op wrapper turning dynamo off and on again

    # FakeTensorMode's own dispatch, without the wrapper that turns dynamo off for each op (and would import it)
    __torch_dispatch__ = inspect.unwrap(FakeTensorMode.__dict__["__torch_dispatch__"])

    def _prep_args_for_hash(self, result: list[Any], args: Any, state: Any,
                            id_hashed_objects: list[Any]) -> None:
        if isinstance(args, dict):
            super()._prep_args_for_hash(result, args, state, id_hashed_objects)
            return
        if isinstance(args, list | tuple):
            result.append(type(args))
            result.append(len(args))
        for arg in args:
            kind = type(arg)
            if kind in _PLAIN:
                result.append(kind)  # 1 and 1.0 hash alike but give different dtypes
                result.append(arg)
            elif kind is FakeTensor and self._plain_tensor(arg):
                result.append(_TENSOR)
                result.append((arg.dtype, arg.shape, arg.stride(), arg.fake_device, arg.storage_offset(),
                               arg.untyped_storage().nbytes(), arg.requires_grad, arg.is_quantized,
                               arg.is_conj(), arg.is_neg(), arg.is_inference()))
            else:
                super()._prep_args_for_hash(result, (arg,), state, id_hashed_objects)

    def _plain_tensor(self, tensor: FakeTensor) -> bool:
        return (tensor.fake_mode is self and tensor.constant is None and tensor.layout is torch.strided
                and not tensor._has_symbolic_sizes_strides)
