"""simulate's quantized layers (harness/simulate/quant_stand_ins.py) against bitsandbytes' real ones: the same
tensors, dtype by dtype, shape by shape and byte by byte; and a simulated tiny nf4 step against its measured peak
(benchmarks/results/accuracy-recipes-cpu.json)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from harness.core.spec import RunSpec
from harness.models.quantize import _quantized
from harness.simulate.quant_stand_ins import stand_in_layer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                reason="bitsandbytes is not installed")
RESULTS = Path(__file__).parents[2] / "benchmarks" / "results" / "accuracy-recipes-cpu.json"


def _held(layer: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor the layer keeps between steps: parameters, buffers, and the quantizer's state."""
    held = dict(layer.named_parameters()) | dict(layer.named_buffers())
    state = getattr(layer.weight, "quant_state", None)
    if state is not None:
        held |= {f"quant_state.{k}": v for k, v in vars(state).items() if isinstance(v, torch.Tensor)}
        held |= {f"quant_state.state2.{k}": v for k, v in vars(state.state2).items() if isinstance(v, torch.Tensor)}
    for name in ("CB", "SCB"):
        if isinstance(value := getattr(layer.weight, name, None), torch.Tensor):
            held[f"weight.{name}"] = value
    return held


def _bytes(held: dict[str, torch.Tensor]) -> int:
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in held.values()}
    return sum(storages.values())


@pytest.mark.parametrize(("quant", "dtype"), [("nf4", "fp32"), ("nf4", "bf16"), ("int8", "fp32"), ("int8", "bf16")])
@pytest.mark.parametrize("bias", [False, True])
def test_stand_in_holds_the_real_layers_bytes(quant: str, dtype: str, bias: bool) -> None:
    spec = RunSpec(model="tiny", quant=quant, dtype=dtype, lora_rank=8)
    linear = nn.Linear(256, 688, bias=bias)
    real, stand_in = _quantized(linear, spec, torch.device("cpu")), stand_in_layer(linear, spec, torch.device("cpu"))
    assert type(stand_in).__mro__[1 if quant == "nf4" else 0] is type(real)  # peft adapts the same class

    def layout(held: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {name: (t.dtype, tuple(t.shape)) for name, t in held.items()}

    assert layout(_held(stand_in)) == layout(_held(real))
    assert _bytes(_held(stand_in)) == _bytes(_held(real))


def test_simulated_tiny_nf4_single_within_1_percent_of_measured() -> None:
    from harness.run.validate import validate
    from harness.simulate.runner import simulate

    case = json.loads(RESULTS.read_text())["cases"]["tiny-single-n1-4x128-lora_rank=8-quant=nf4"]
    spec = validate(RunSpec(**case["spec"], device="cpu"), measure=False)
    assert abs(simulate(spec, "cpu").peak_bytes / case["reference_bytes"] - 1) <= 0.01


def test_modules_move_under_fake_mode_as_for_real() -> None:
    """peft moves adapters to the base layer's device and dtype: a fake module keeps the tensors `.to` leaves
    as they are (the same objects, as a real `.to` keeps them) and gets what it changes."""
    from harness.simulate.fake_mode import SimFakeMode
    from harness.simulate.quant_stand_ins import quantized_stand_ins

    with quantized_stand_ins(), SimFakeMode(allow_non_fake_inputs=True):
        linear = nn.Linear(8, 4)
        weight = linear.weight
        assert linear.to("cpu").weight is weight
        linear.to(torch.bfloat16)
        assert linear.weight.dtype is torch.bfloat16 and linear.bias.dtype is torch.bfloat16
        assert isinstance(linear.weight, nn.Parameter) and linear.weight.requires_grad


def test_int8_matmul_is_bitsandbytes_own_outside_the_simulation() -> None:
    from bitsandbytes.autograd import _functions

    from harness.simulate.quant_stand_ins import quantized_stand_ins

    original = _functions.MatMul8bitFp
    with quantized_stand_ins():
        from harness.models import quantize

        quantize._quantized(nn.Linear(8, 4), RunSpec(model="tiny", quant="int8", lora_rank=8), torch.device("cpu"))
        assert _functions.MatMul8bitFp is not original  # keeps its input as a saved tensor
    assert _functions.MatMul8bitFp is original
