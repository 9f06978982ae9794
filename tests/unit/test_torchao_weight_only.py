"""torchao's weight-only quantization for generation (`--quant int8-torchao|int4-torchao`) and torchao's
NF4Tensor (`nf4-torchao`) as a generation load: validation, the layers a load makes, the bytes the estimate counts
against the real tensors, and the simulator's refusals."""

from __future__ import annotations

import pytest
import torch

from harness.core.errors import SpecError, Unsupported
from harness.core.spec import RunSpec
from harness.estimate.load_bytes import QUANT_WIDTH, RULE_BYTES, quantizer_extra, rule_table
from harness.models.generate import load_weights
from harness.models.llama import build_model
from harness.models.zoo import ZOO, get_config
from harness.run.validate import validate

GEN = RunSpec(workload="generate", model="tiny", device="cpu", batch_size=2, prompt_len=8, new_tokens=4)


def _size(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


@pytest.mark.parametrize(("fields", "flag", "message"), [
    ({"quant": "int8-torchao", "lora_rank": 8}, "quant", "int8-torchao is torchao's post-training weight-only"),
    ({"quant": "int4-torchao", "lora_rank": 8}, "quant", "int4-torchao is torchao's post-training weight-only"),
    ({"quant": "int4-torchao", "workload": "generate"}, "dtype", "fp32 with --quant int4-torchao: torchao's int4"),
])
def test_torchao_weight_only_refuses_what_can_never_run(fields: dict[str, object], flag: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        validate(RunSpec(model="tiny", device="cpu", **fields), measure=False)  # type: ignore[arg-type]
    assert raised.value.field == flag
    assert str(raised.value).startswith(f"--{flag}: {message}")


def test_int4_torchao_is_unsupported_on_the_cpu_and_valid_for_a_cuda_target() -> None:
    spec = GEN.with_(quant="int4-torchao", dtype="bf16")
    with pytest.raises(Unsupported, match="int4-torchao on the CPU: torchao 0.18 has no int4 weight-only layout"):
        validate(spec)
    assert validate(spec.with_(device="cuda"), measure=False).quant == "int4-torchao"


@pytest.mark.parametrize("quant", ["int8-torchao", "nf4-torchao"])
def test_generation_loads_torchao_weights_in_every_block_projection(quant: str) -> None:
    """Each block projection holds torchao's tensor and computes with its dequantized weight; the embedding,
    norms and head stay fp32."""
    from torchao.quantization import Int8Tensor, NF4Tensor

    spec = validate(GEN.with_(quant=quant))
    model = load_weights(build_model(get_config("tiny"), 16), torch.device("cpu"), spec)
    kind = Int8Tensor if quant == "int8-torchao" else NF4Tensor
    projections = [m for block in model.layers for m in block.modules() if isinstance(m, torch.nn.Linear)]
    assert len(projections) == 7 * get_config("tiny").n_layers
    assert all(isinstance(m.weight, kind) for m in projections)
    assert model.output.weight.dtype == torch.float32 and not isinstance(model.output.weight, kind)
    layer = projections[0]
    x = torch.randn(3, layer.in_features)
    dequantized = layer.weight.dequantize() if quant == "int8-torchao" else layer.weight.get_original_weight()
    torch.testing.assert_close(layer(x), x @ dequantized.t(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("n_in", "n_out"), [(256, 768), (768, 256), (4096, 1024)])
def test_quantizer_extra_is_what_torchao_keeps(dtype: torch.dtype, n_in: int, n_out: int) -> None:
    """Real torchao tensors quantized on the CPU: beyond the quantized values at QUANT_WIDTH bytes each, what they
    keep (int8: scale and zero point per row; NF4: scalers, factors, mean and table) is quantizer_extra's."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_, to_nf4

    linear = torch.nn.Linear(n_in, n_out, bias=False).to(dtype)
    quantize_(linear, Int8WeightOnlyConfig(set_inductor_config=False))
    int8 = linear.weight
    assert _size(int8.qdata) == n_in * n_out * QUANT_WIDTH["int8-torchao"]
    assert _size(int8.scale) + _size(int8.zero_point) == quantizer_extra(n_in, n_out, "int8-torchao")
    nf4 = to_nf4(torch.randn(n_out, n_in, dtype=dtype))
    assert _size(nf4.quantized_data) == n_in * n_out * QUANT_WIDTH["nf4-torchao"]
    kept = sum(_size(t) for t in (nf4.quantized_scalers, nf4.quantization_factor, nf4.scaler_mean, nf4.nf4))
    assert kept == quantizer_extra(n_in, n_out, "nf4-torchao", dtype.itemsize)


def test_rule_table_sets_torchao_beside_the_rule() -> None:
    """The rule of thumb's table gains torchao's int8 and int4 rows at 1 and 0.5 B/param; each estimate is the
    rule plus the quantizer's scales (int4: with its padding) and the layers kept in 16 bits."""
    cfg = ZOO["baichuan-7b"]
    rows = {r["row"]: r for r in rule_table(cfg, RunSpec())}
    for row, rule in (("int8 torchao", "int8"), ("int4 torchao", "int4")):
        assert float(rows[row]["rule_gib"]) == float(rows[rule]["rule_gib"])
        assert float(rows[row]["rule_gib"]) * 2**30 == cfg.param_count() * RULE_BYTES[rule]
        parts = sum(float(rows[row][k]) for k in ("rule_gib", "scales_gib", "unquantized_gib"))
        assert float(rows[row]["estimate_gib"]) == pytest.approx(parts, rel=1e-12)
        assert float(rows[row]["scales_gib"]) > 0


def test_int4_torchao_counts_the_tinygemm_padding() -> None:
    """Inputs padded to a multiple of 1024 and outputs to one of 8, a bf16 scale and zero per 128 inputs: an
    (11008 in, 4096 out) projection is stored as (11264, 4096)."""
    packed = 11264 * 4096 / 2 + 11264 // 128 * 4096 * 4
    assert 11008 * 4096 * QUANT_WIDTH["int4-torchao"] + quantizer_extra(11008, 4096, "int4-torchao") == packed
