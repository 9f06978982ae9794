"""The activation model (harness/estimate/activations.py) against what autograd really keeps: one zoo block's forward
under `torch.autograd.graph.saved_tensors_hooks`, every saved tensor's storage counted once, parameters and
the rotary table left out (they exist before the step).  A block in the middle of the network: its input
carries a gradient."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import pytest
import torch
from torch import nn

from harness.core.spec import RunSpec
from harness.estimate.activations import Shapes, head_bytes, saved_in_block
from harness.models.llama import build_model
from harness.models.lora import add_adapters
from harness.models.materialize import materialize
from harness.models.zoo import config_for
from harness.train.step import loss_fn

CASES = [  # (dtype, LoRA rank, FSDP-style 16-bit parameters)
    ("fp32", 0, False), ("fp32", 8, False), ("bf16", 0, True), ("bf16", 8, True), ("bf16", 0, False),
    ("bf16", 8, False),
]


def _saved_bytes(block: nn.Module, x: torch.Tensor, rope: torch.Tensor, autocast: bool) -> int:
    before = {t.untyped_storage().data_ptr() for t in [*block.parameters(), rope]}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in before:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), context:
        out = block(x, rope)
    assert out.requires_grad
    return sum(storages.values())


def _model(spec: RunSpec, casts_params: bool) -> tuple[Any, torch.Tensor]:
    cfg = config_for(spec)
    model = add_adapters(build_model(cfg, spec.seq_len), spec)
    materialize(model, torch.device("cpu"), spec.seed)
    width = torch.bfloat16 if casts_params else torch.float32
    model.to(width)
    model.rope = model.rope.float()
    return model, torch.randn(spec.batch_size, spec.seq_len, cfg.dim, dtype=width, requires_grad=True)


def _block(spec: RunSpec, casts_params: bool) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model, x = _model(spec, casts_params)
    return model.layers[1], x, model.rope


@pytest.mark.parametrize(("dtype", "rank", "casts_params"), CASES)
def test_a_blocks_saved_tensors_are_counted_exactly(dtype: str, rank: int, casts_params: bool) -> None:
    spec = RunSpec(model="tiny", batch_size=2, seq_len=64, dtype=dtype, lora_rank=rank)
    block, x, rope = _block(spec, casts_params)
    measured = _saved_bytes(block, x, rope, autocast=dtype == "bf16" and not casts_params)
    assert measured == saved_in_block(Shapes.of(config_for(spec), spec, casts_params=casts_params), spec)


@contextmanager
def _zero3_linear() -> Iterator[None]:
    """DeepSpeed ZeRO-3's F.linear (memory_efficient_linear), which saves its input whatever trains."""
    from deepspeed.runtime.zero.linear import zero3_linear_wrap

    original = torch.nn.functional.linear
    torch.nn.functional.linear = zero3_linear_wrap
    try:
        yield
    finally:
        torch.nn.functional.linear = original


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
@pytest.mark.parametrize("rank", [0, 8])
def test_zero3s_linear_keeps_every_projections_input(rank: int) -> None:
    spec = RunSpec(model="tiny", batch_size=2, seq_len=64, dtype="fp32", lora_rank=rank)
    block, x, rope = _block(spec, casts_params=False)
    with _zero3_linear():
        measured = _saved_bytes(block, x, rope, autocast=False)
    shapes = Shapes.of(config_for(spec), spec, every_input=True)
    assert measured == saved_in_block(shapes, spec)
    if rank:  # frozen projections keep inputs they would not otherwise
        assert measured > saved_in_block(Shapes.of(config_for(spec), spec), spec)


class _Head(nn.Module):
    """The final norm, the output projection and the loss, as a training step runs them after the blocks."""

    def __init__(self, model: Any, targets: torch.Tensor) -> None:
        super().__init__()
        self.norm, self.output, self.targets = model.norm, model.output, targets

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        return loss_fn(self.output(self.norm(x)), self.targets)


@pytest.mark.parametrize(("dtype", "rank", "casts_params"), CASES)
def test_the_heads_saved_tensors_are_counted_exactly(dtype: str, rank: int, casts_params: bool) -> None:
    """The loss also keeps its targets and a 0-dim weight total; the targets exist before the step and are left
    out with the parameters, the 4-byte total is added here."""
    spec = RunSpec(model="tiny", batch_size=2, seq_len=64, dtype=dtype, lora_rank=rank)
    model, x = _model(spec, casts_params)
    targets = torch.randint(0, config_for(spec).vocab_size, (spec.batch_size, spec.seq_len))
    head = _Head(model, targets)
    measured = _saved_bytes(head, x, targets, autocast=dtype == "bf16" and not casts_params)
    shapes = Shapes.of(config_for(spec), spec, casts_params=casts_params)
    assert measured == head_bytes(shapes, spec).forward + 4
