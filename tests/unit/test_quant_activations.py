"""The quantized-base activation rule (harness/estimate/quant_activations.py) against what autograd really keeps:
one quantized zoo block's forward (bitsandbytes' or torchao's layers) under
`torch.autograd.graph.saved_tensors_hooks`, plus the tensors the quantized layers' custom autograd Functions hold
on their ctx (bitsandbytes' MatMul8bitFp keeps its input there, out of the hooks' sight).  Every storage counted
once; parameters, the quantizers' state and the rotary table left out (they exist before the step)."""

from __future__ import annotations

import importlib.util
from contextlib import nullcontext
from dataclasses import replace

import pytest
import torch
from torch import nn

from harness.core.spec import RunSpec
from harness.estimate.activations import Shapes, saved_in_block
from harness.estimate.quant_activations import quant_saved_in_block
from harness.models.llama import build_model
from harness.models.materialize import materialize
from harness.models.quantize import quantize_and_adapt
from harness.models.zoo import ZOO, config_for

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                reason="bitsandbytes is not installed")


def _ctx_tensors(out: torch.Tensor) -> list[torch.Tensor]:
    """Tensors held as attributes of the graph's nodes (custom Functions' ctx), walked from `out`."""
    seen: set[int] = set()
    stack, found = [out.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for value in getattr(node, "__dict__", {}).values():
            found += [t for t in (value if isinstance(value, tuple | list) else [value]) if isinstance(t, torch.Tensor)]
        stack.extend(f for f, _ in node.next_functions)
    return found


def _existing(model: nn.Module) -> set[int]:
    """Storages that exist before the step: parameters, buffers, the quantizers' state."""
    tensors = [*model.parameters(), *model.buffers(), model.rope]
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None:
            tensors += [t for t in vars(state).values() if isinstance(t, torch.Tensor)]
            tensors += [t for t in vars(state.state2 or object()).values() if isinstance(t, torch.Tensor)]
        lt = getattr(module, "state", None)
        tensors += [t for t in (getattr(lt, "CB", None), getattr(lt, "SCB", None)) if isinstance(t, torch.Tensor)]
    for t in list(tensors):  # a wrapper subclass (NF4Tensor) owns no storage: its inner tensors do
        if hasattr(t, "__tensor_flatten__"):
            tensors += [getattr(t, name) for name in t.__tensor_flatten__()[0]]
    return {t.untyped_storage().data_ptr() for t in tensors if not hasattr(t, "__tensor_flatten__")}


def _measured(spec: RunSpec) -> int:
    cfg = config_for(spec)
    model = build_model(cfg, spec.seq_len)
    materialize(model, torch.device("cpu"), spec.seed)
    model = quantize_and_adapt(model, spec, torch.device("cpu"))
    before, storages = _existing(model), {}
    params = {id(p) for p in model.parameters()}  # an NF4Tensor weight is saved as the parameter itself

    def note(t: torch.Tensor) -> torch.Tensor:
        if id(t) in params:
            return t
        storage = t.untyped_storage()
        if storage.data_ptr() not in before:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randn(spec.batch_size, spec.seq_len, cfg.dim, requires_grad=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if spec.dtype == "bf16" else nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(note, lambda t: t), autocast:
        out = model.layers[1](x, model.rope)
    for t in _ctx_tensors(out):
        note(t)
    return sum(storages.values())


def _qk_norm_gqa() -> str:
    """tiny with grouped k/v heads and a norm over each head of q and k (Qwen3's shape)."""
    return replace(ZOO["tiny"], n_kv_heads=2, qk_norm=True).to_json()


@pytest.mark.parametrize("quant", ["int8", "nf4", "nf4-torchao"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize(("targets", "shape"), [("q,v", ""), ("all-linear", ""), ("all-linear", "qk-norm gqa")])
def test_a_quantized_blocks_saved_tensors_are_counted_exactly(quant: str, dtype: str, targets: str,
                                                              shape: str) -> None:
    spec = RunSpec(model="tiny", batch_size=2, seq_len=64, dtype=dtype, lora_rank=8, lora_targets=targets,
                   quant=quant, model_config=_qk_norm_gqa() if shape else "")
    assert _measured(spec) == quant_saved_in_block(Shapes.of(config_for(spec), spec), spec)


def test_a_4_bit_base_keeps_no_16_bit_weight_copies() -> None:
    """Under autocast the unquantized rule counts a 16-bit copy of every projection's weight, which a 4-bit
    base does not keep: on 8b at 1 x 2048 they are most of what the unquantized block keeps."""
    spec = RunSpec(model="8b", batch_size=1, seq_len=2048, dtype="bf16", lora_rank=8, quant="nf4")
    cfg = config_for(spec)
    shapes = Shapes.of(cfg, spec)
    copies = (cfg.param_count() - 2 * cfg.vocab_size * cfg.dim) / cfg.n_layers * 2.0  # a block's weights, 16-bit
    assert quant_saved_in_block(shapes, spec) < saved_in_block(shapes, spec.with_(quant="none")) - copies / 2
