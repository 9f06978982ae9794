"""Quantized base layers for `simulate` (`--quant int8|nf4|nf4-torchao`): bitsandbytes' own layer classes holding
the bytes the real layers hold, without the parameter classes fake tensors cannot build.  torchao's NF4Linear
(nf4-torchao) runs as it is: to_nf4 quantizes a fake tensor as it does a real one.  All three need peft to add
adapters under fake mode, which `_fake_safe_to` allows.

bitsandbytes quantizes by wrapping real data in Params4bit / Int8Params (torch.Tensor._make_subclass, which
refuses a FakeTensor) and running its quantize kernels on it.  Here each block projection becomes the same
layer class (Linear4bit / Linear8bitLt, so peft adapts it as it adapts the real one) whose weight is a plain
frozen parameter of the packed dtype and shape, with the quant state the real layer keeps:

  nf4   the packed weight, 2 values per byte stored in the compute dtype (quant_storage), shape
        ((out * in + 1) // (2 * itemsize), 1); the quant state, nested as bitsandbytes nests it by default: one
        uint8 absmax per block of 64, one fp32 absmax per 256 of those, the 16-entry NF4 code, the 256-entry
        code of the nested absmax and its fp32 offset (one of each per layer: bitsandbytes does not share them).
  int8  the int8 weight (CB is the same storage) and one fp32 scale per output row (SCB).

What runs is the real layer's forward: MatMul4Bit (keeps the packed weight only, output cast back to the
input's dtype) and MatMul8bitFp (keeps its input, dequantizes the weight per call), on bitsandbytes' fake kernels
for its ops; MatMul8bitFp keeps its input as a saved tensor rather than a ctx attribute (`_input_saved_not_held`).
tests/unit/test_quant_stand_ins.py compares every byte with the real layers'.  Not made: what bitsandbytes'
CPU kernels allocate inside one op (gemm_4bit dequantizes the weight, and the nested absmax, to a transient
(out, in) tensor; its fake kernel makes only the output).  On the recipes matrix's tiny cases the peak is at the
loss's backward, where no block's matmul runs, and the simulated peaks are 0.11-0.14% under the measured.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from harness.core.spec import RunSpec

BLOCK, NESTED_BLOCK, NF4_CODE, NESTED_CODE = 64, 256, 16, 256


def nf4_quant_state(out_features: int, in_features: int, dtype: torch.dtype, device: torch.device) -> Any:
    """The QuantState bitsandbytes' Params4bit keeps for an (out, in) weight of `dtype` (nested statistics)."""
    from bitsandbytes.functional import QuantState

    blocks = -(-out_features * in_features // BLOCK)

    def empty(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, device=device)

    nested = QuantState(absmax=empty(-(-blocks // NESTED_BLOCK)), code=empty(NESTED_CODE),
                        blocksize=NESTED_BLOCK, dtype=torch.float32)
    return QuantState(absmax=empty(blocks, dtype=torch.uint8), shape=torch.Size([out_features, in_features]),
                      code=empty(NF4_CODE), dtype=dtype, blocksize=BLOCK, quant_type="nf4", offset=empty(),
                      state2=nested)


def _frozen(tensor: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor, requires_grad=False)


def _on_meta(layer_class: Any) -> Any:
    """The layer built on the meta device outside fake mode: its constructor wraps a meta tensor in Params4bit /
    Int8Params, which a FakeTensor cannot become; the weight is replaced right after."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    def build(*args: Any, **kwargs: Any) -> Any:
        with unset_fake_temporarily():
            return layer_class(*args, **kwargs)

    return build


def _nf4_layer(linear: nn.Linear, compute: torch.dtype, device: torch.device) -> nn.Module:
    import bitsandbytes as bnb

    class SimLinear4bit(bnb.nn.Linear4bit):
        """Linear4bit whose packed weight is a plain parameter; the quant state goes back on the parameter FSDP2
        gathers before each call, as Linear4bit restores it from the module on a real run."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if getattr(self.weight, "quant_state", None) is None:
                self.weight.quant_state = self.quant_state  # type: ignore[attr-defined]
            return super().forward(x)

    out_f, in_f = linear.out_features, linear.in_features
    layer = _on_meta(SimLinear4bit)(in_f, out_f, bias=False, quant_type="nf4", compute_dtype=compute,
                          quant_storage=compute, device="meta")
    packed = (out_f * in_f + 1) // (2 * compute.itemsize)
    layer.weight = _frozen(torch.empty((packed, 1), dtype=compute, device=device))
    layer.quant_state = layer.weight.quant_state = nf4_quant_state(out_f, in_f, linear.weight.dtype, device)
    return layer


def _int8_layer(linear: nn.Linear, device: torch.device) -> nn.Module:
    import bitsandbytes as bnb

    layer = _on_meta(bnb.nn.Linear8bitLt)(linear.in_features, linear.out_features, bias=False, has_fp16_weights=False,
                                device="meta")
    weight = _frozen(torch.empty((linear.out_features, linear.in_features), dtype=torch.int8, device=device))
    weight.CB = weight.data  # type: ignore[attr-defined]  # Int8Params keeps CB as its own storage
    weight.SCB = torch.empty(linear.out_features, dtype=torch.float32, device=device)  # type: ignore[attr-defined]
    weight.has_fp16_weights = False  # type: ignore[attr-defined]
    layer.weight = weight
    return layer


def _input_saved_not_held(original: Any) -> Any:
    """MatMul8bitFp with its input kept as a saved tensor instead of a ctx attribute: the same bytes, kept
    until backward.  A real run frees the attribute with the graph after backward; under fake tensors the
    step's MatMul8bitFp nodes outlive it (held from C++, no Python referrer: 25 after the first step of tiny,
    49 after the second), so the attribute would keep every input of the previous step alive into the next
    (+10.7 to +15.2% on tiny); a saved tensor is released at backward."""

    class MatMul8bitFp(original):  # type: ignore[misc, valid-type]
        @staticmethod
        def forward(ctx: Any, A: torch.Tensor, *args: Any) -> torch.Tensor:  # noqa: N803  # bitsandbytes' name
            output = original.forward(ctx, A, *args)
            del ctx.A
            ctx.save_for_backward(A)
            return output

        @staticmethod
        def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
            ctx.A, = ctx.saved_tensors
            try:
                return original.backward(ctx, grad_output)
            finally:
                del ctx.A

    return MatMul8bitFp


def stand_in_layer(linear: nn.Linear, spec: RunSpec, device: torch.device) -> nn.Module:
    """The simulated counterpart of models/quantize.py's `_quantized`: the same layer class and bytes."""
    from harness.models.quantize import compute_dtype

    layer = _int8_layer(linear, device) if spec.quant == "int8" else _nf4_layer(linear, compute_dtype(spec), device)
    if linear.bias is not None:
        layer.bias = _frozen(linear.bias.data)
    return layer


def kept_beside_weights(model: nn.Module) -> list[torch.Tensor]:
    """What the stand-in layers keep beside their parameters, which a tracker following parameters and buffers
    does not see: int8's SCB, nf4's quant state (absmax, code, offset and the nested absmax and code)."""
    kept: list[torch.Tensor] = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(getattr(weight, "SCB", None), torch.Tensor):
            kept.append(weight.SCB)  # type: ignore[union-attr]
        state = getattr(module, "quant_state", None)
        if state is not None:
            kept += [t for t in (state.absmax, state.code, state.offset) if t is not None]
            if state.state2 is not None:
                kept += [state.state2.absmax, state.state2.code]
    return kept


def _fake_safe_to(original: Any) -> Any:
    """nn.Module.to, and where it fails on a fake tensor, the rest done tensor by tensor: each tensor `.to`
    changes becomes a new parameter (or buffer) in place of the old, which is freed, as a real `.to` frees it;
    one it leaves as it is stays, allocating nothing.  On a fake tensor nn.Module swaps every tensor with what
    `.to` returned, which fails where that is the tensor itself (peft moves each new adapter, and the layer it
    wraps, to the base weight's device and dtype); the tensors swapped before the failure are moved already."""

    def to(module: nn.Module, *args: Any, **kwargs: Any) -> nn.Module:
        try:
            return original(module, *args, **kwargs)
        except RuntimeError as error:
            if "Couldn't swap" not in str(error):
                raise
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        for sub in module.modules():
            for table in (sub._parameters, sub._buffers):
                for name, tensor in table.items():
                    if tensor is None:
                        continue
                    keep = dtype if tensor.is_floating_point() or tensor.is_complex() else None
                    moved = tensor.to(device, keep, non_blocking)
                    if moved is not tensor:
                        table[name] = nn.Parameter(moved, tensor.requires_grad) if table is sub._parameters else moved  # type: ignore[assignment]
        return module

    return to


@contextmanager
def quantized_stand_ins() -> Iterator[None]:
    """models/quantize.py builds the stand-in layers instead of bitsandbytes' parameter classes, and peft adds
    adapters to them under fake mode; bitsandbytes is imported only once a layer is quantized (int8 then gets
    its MatMul8bitFp with the input saved, `_input_saved_not_held`)."""
    from harness.models import quantize

    saved = quantize._quantized, nn.Module.to
    matmul: list[Any] = []  # bitsandbytes' module and its MatMul8bitFp, once replaced

    def build(linear: nn.Linear, spec: RunSpec, device: torch.device) -> nn.Module:
        if spec.quant not in ("int8", "nf4"):  # torchao's NF4Tensor is its own
            return saved[0](linear, spec, device)
        if spec.quant == "int8" and not matmul:
            from bitsandbytes.autograd import _functions as bnb_functions

            matmul.extend((bnb_functions, bnb_functions.MatMul8bitFp))
            bnb_functions.MatMul8bitFp = _input_saved_not_held(matmul[1])  # type: ignore[misc]
        return stand_in_layer(linear, spec, device)

    quantize._quantized = build  # type: ignore[assignment]
    nn.Module.to = _fake_safe_to(saved[1])  # type: ignore[method-assign]
    try:
        yield
    finally:
        quantize._quantized, nn.Module.to = saved  # type: ignore[method-assign]
        if matmul:
            matmul[0].MatMul8bitFp = matmul[1]
