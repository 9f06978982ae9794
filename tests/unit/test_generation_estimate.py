"""The generation estimate (harness/estimate/generation.py, load_bytes.py, generation_search.py): the KV cache
against the formula worked by hand from the models' published shapes, the weights against the
bytes-per-parameter rule plus what bitsandbytes keeps, the searches against the model they search, and
`spacetime estimate --workload generate` for the large models in a fresh process without torch."""

from __future__ import annotations

import json

import pytest

from harness.core.memory import CUDA_CONTEXT_BYTES
from harness.core.spec import RunSpec
from harness.core.units import GIB
from harness.estimate.generation import predict_generation
from harness.estimate.generation_search import max_context, max_generate_batch
from harness.estimate.load_bytes import loaded_weights, rule_table
from harness.models.zoo import ZOO
from tests.unit.test_light_commands import light


def gen(model: str, **fields: object) -> RunSpec:
    return RunSpec(model=model, workload="generate", device="cuda", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_kv_cache_8b_gqa_by_hand(kind: str) -> None:
    """Llama 3 8B: 32 layers, 8 kv heads of 128 (grouped-query attention: 32 query heads share them).  Batch 3
    x 2 beams, 1000 prompt + 48 new tokens, bf16 (2 B): static holds 1048 positions, dynamic the 1047 the loop
    feeds back."""
    positions = 1048 if kind == "static" else 1047
    by_hand = 2 * 32 * 8 * 128 * positions * (3 * 2) * 2
    spec = gen("8b", dtype="bf16", batch_size=3, num_beams=2, prompt_len=1000, new_tokens=48, kv_cache=kind)
    assert predict_generation(spec).kv_cache_bytes == by_hand


def test_kv_cache_7b_mha_by_hand() -> None:
    """Llama 2 7B: 32 layers, 32 kv heads of 128 (every query head its own), fp32 (4 B), batch 5, 2048 + 256:
    four times 8B's cache at the same shape, which shares each kv head among four query heads."""
    by_hand = 2 * 32 * 32 * 128 * (2048 + 256) * 5 * 4
    fields = dict(batch_size=5, prompt_len=2048, new_tokens=256)
    assert predict_generation(gen("7b", **fields)).kv_cache_bytes == by_hand
    assert predict_generation(gen("8b", **fields)).kv_cache_bytes * 4 == by_hand


def test_kv_cache_split_by_tensor_parallelism() -> None:
    """tp 4 keeps 2 of 8B's 8 kv heads per rank."""
    fields = dict(dtype="bf16", batch_size=2, prompt_len=512, new_tokens=64)
    whole = predict_generation(gen("8b", **fields)).kv_cache_bytes
    assert predict_generation(gen("8b", strategy="tp", nproc=4, **fields)).kv_cache_bytes * 4 == whole


@pytest.mark.parametrize("model", ["baichuan-7b", "7b", "8b", "13b", "70b"])
@pytest.mark.parametrize(("dtype", "width"), [("fp32", 4), ("bf16", 2), ("fp16", 2)])
def test_unquantized_weights_are_params_times_width(model: str, dtype: str, width: int) -> None:
    spec = gen(model, dtype=dtype)
    exact = ZOO[model].param_count() * width
    assert loaded_weights(ZOO[model], spec).total == exact
    assert predict_generation(spec).breakdown["weights"] == exact


def _projections(model: str) -> list[tuple[int, int]]:
    """(in, out) of every block projection, from the zoo's shape fields."""
    c = ZOO[model]
    q, kv = c.n_heads * (c.dim // c.n_heads), c.n_kv_heads * (c.dim // c.n_heads)
    one = [(c.dim, q), (c.dim, kv), (c.dim, kv), (q, c.dim), (c.dim, c.ffn_dim), (c.dim, c.ffn_dim),
           (c.ffn_dim, c.dim)]
    return one * c.n_layers


@pytest.mark.parametrize("model", ["baichuan-7b", "7b", "8b", "13b", "70b"])
def test_int8_is_the_rule_plus_row_scales(model: str) -> None:
    """int8: one byte per projection weight and an fp32 scale per output row (Int8Params' SCB); the
    embedding, norms and output head stay bf16."""
    projections = _projections(model)
    quantized = sum(i * o for i, o in projections)
    rest = ZOO[model].param_count() - quantized
    scales = sum(4 * o for _, o in projections)
    assert loaded_weights(ZOO[model], gen(model, dtype="bf16", quant="int8")).total == quantized + scales + rest * 2


@pytest.mark.parametrize("model", ["baichuan-7b", "7b", "8b", "13b", "70b"])
def test_nf4_is_the_rule_plus_double_quantized_absmax(model: str) -> None:
    """nf4: half a byte per weight; per 64-weight block a uint8 absmax; per 256 of those an fp32 absmax; per
    tensor an fp32 offset, the 16-entry fp32 code and the 256-entry fp32 map; one more map, cached."""
    projections = _projections(model)
    quantized = sum(i * o for i, o in projections)
    rest = ZOO[model].param_count() - quantized
    extra = 0
    for i, o in projections:
        blocks = -(-i * o // 64)
        extra += blocks + 4 * -(-blocks // 256) + 4 + 16 * 4 + 256 * 4
    total = quantized / 2 + extra + 256 * 4 + rest * 2
    assert loaded_weights(ZOO[model], gen(model, dtype="bf16", quant="nf4")).total == total


def test_rule_of_thumb_table_for_baichuan_7b() -> None:
    """The rule column reproduces 26.08/13.04/6.52/3.26 GiB for 7,000,559,616 parameters; each estimate is
    the rule plus the quantizer's scales and the layers kept in 16 bits."""
    assert ZOO["baichuan-7b"].param_count() == 7_000_559_616
    rows = {r["row"]: r for r in rule_table(ZOO["baichuan-7b"], RunSpec())}
    assert [round(float(rows[n]["rule_gib"]), 2) for n in ("fp32", "bf16", "int8", "int4")] == [
        26.08, 13.04, 6.52, 3.26]
    for row in rows.values():
        parts = float(row["rule_gib"]) + float(row["scales_gib"]) + float(row["unquantized_gib"])
        assert float(row["estimate_gib"]) == pytest.approx(parts, rel=1e-12)


@pytest.mark.parametrize("fields", [dict(model="8b", dtype="bf16", prompt_len=2048, new_tokens=256),
                                    dict(model="7b", dtype="fp32", num_beams=4, kv_cache="dynamic"),
                                    dict(model="70b", dtype="bf16", strategy="tp", nproc=8, quant="none")])
def test_max_batch_is_the_last_that_fits(fields: dict[str, object]) -> None:
    spec = gen(**fields)  # type: ignore[arg-type]
    limit = 80 * GIB
    found = max_generate_batch(spec, limit)
    assert found >= 1
    assert predict_generation(spec.with_(batch_size=found)).device_bytes <= limit
    assert predict_generation(spec.with_(batch_size=found + 1)).device_bytes > limit


@pytest.mark.parametrize("fields", [dict(model="8b", dtype="bf16", batch_size=8, new_tokens=128),
                                    dict(model="13b", dtype="bf16", num_beams=2, kv_cache="dynamic")])
def test_max_context_is_the_last_that_fits(fields: dict[str, object]) -> None:
    spec = gen(**fields)  # type: ignore[arg-type]
    limit = 40 * GIB
    found = max_context(spec, limit)
    assert found > spec.new_tokens
    prompt = found - spec.new_tokens
    assert predict_generation(spec.with_(prompt_len=prompt)).device_bytes <= limit
    assert predict_generation(spec.with_(prompt_len=prompt + 1)).device_bytes > limit


def test_nothing_fits_below_the_weights() -> None:
    spec = gen("70b", dtype="bf16")
    assert max_generate_batch(spec, 100 * GIB) == 0
    assert max_context(spec, 100 * GIB) == 0


@pytest.mark.parametrize("model", ["7b", "8b", "13b", "70b"])
def test_estimate_generate_in_a_fresh_process_without_torch(model: str) -> None:
    args = ["estimate", "--workload", "generate", "--model", model, "--dtype", "bf16", "--batch-size", "2",
            "--prompt-len", "1024", "--new-tokens", "128", "--gpu", "H100-80GB", "--max-batch", "--max-context",
            "--json"]
    code, out = light(*args)
    assert code == 0
    shown = json.loads(out.strip().splitlines()[-1])
    spec = gen(model, dtype="bf16", batch_size=2, prompt_len=1024, new_tokens=128)
    expected = predict_generation(spec)
    assert shown["breakdown"] == {**expected.breakdown, "peak": expected.peak_bytes}
    assert shown["breakdown"]["context"] == CUDA_CONTEXT_BYTES
    assert shown["kv_cache_bytes"] == expected.kv_cache_bytes
    assert shown["max_batch"] == max_generate_batch(spec, 80 * GIB)
    assert shown["max_context"] == max_context(spec, 80 * GIB)


@pytest.mark.parametrize("quant", ["int8", "nf4"])
@pytest.mark.parametrize(("n_in", "n_out"), [(256, 768), (768, 256), (4096, 1024)])
def test_quantizer_extra_is_what_bitsandbytes_keeps(quant: str, n_in: int, n_out: int) -> None:
    """A real bitsandbytes layer quantized on the CPU: its tensors beyond the quantized weight (SCB; the
    absmax, nested absmax, offset and code of the quant state) are what load_bytes.py counts."""
    import torch
    from bitsandbytes.nn import Int8Params, Linear4bit, Linear8bitLt, Params4bit

    from harness.estimate.load_bytes import QUANT_WIDTH, quantizer_extra

    weight = torch.nn.Linear(n_in, n_out, bias=False).weight.data
    layer: torch.nn.Module
    if quant == "int8":
        layer = Linear8bitLt(n_in, n_out, bias=False, has_fp16_weights=False, device="meta")
        layer.weight = Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        layer = Linear4bit(n_in, n_out, bias=False, quant_type="nf4", device="meta")
        layer.weight = Params4bit(weight, requires_grad=False, quant_type="nf4")
    w = layer.to("cpu").weight

    def size(t: torch.Tensor) -> int:
        return t.numel() * t.element_size()

    assert size(w) == n_in * n_out * QUANT_WIDTH[quant]
    if quant == "int8":
        kept = [w.SCB]
    else:
        state = w.quant_state
        kept = [state.absmax, state.code, state.offset.reshape(1), state.state2.absmax, state.state2.code]
    assert sum(size(t) for t in kept) == quantizer_extra(n_in, n_out, quant)


def test_breakdown_keys_and_phase_figures() -> None:
    """The JSON breakdown names weights, kv_cache, activations, logits and peak; the peak is the largest of
    the load, prefill and decode figures."""
    out = predict_generation(gen("8b", dtype="bf16", batch_size=4, prompt_len=2048, new_tokens=256)).to_json()
    assert {"weights", "kv_cache", "activations", "logits", "peak"} <= set(out["breakdown"])
    assert out["peak_bytes"] == out["breakdown"]["peak"]
    assert out["peak_bytes"] == max(out[k] for k in ("load_bytes", "prefill_peak_bytes", "decode_peak_bytes"))


def test_offload_keeps_one_module_on_the_device() -> None:
    """--offload: the largest single module (8B's embedding or output head) on the device, every weight in
    host memory."""
    spec = gen("8b", dtype="bf16", offload="cpu")
    prediction = predict_generation(spec)
    assert prediction.breakdown["weights"] == 128256 * 4096 * 2
    assert prediction.host_bytes == ZOO["8b"].param_count() * 2


def test_the_final_softcap_adds_two_logits_tensors_to_the_prefill() -> None:
    """Gemma 2 at 1 x 2048 in bf16 peaks at its logits: tanh(logits / cap) x cap holds two more tensors of
    2048 x 256,000 bf16 beside them (the same model without the final softcap for reference); its softcapped
    attention is modelled (checked against simulate in tests/accuracy/test_generation_big_shapes.py)."""
    from harness.models.hf_config import custom_config

    capped = gen("gemma2-9b", dtype="bf16", batch_size=1, prompt_len=2048)
    cfg = custom_config("gemma2-9b", None, ["final_softcap=0"])
    assert cfg is not None
    plain = gen(cfg.name, dtype="bf16", batch_size=1, prompt_len=2048, model_config=cfg.to_json())
    figures = [predict_generation(s).phase_peaks["prefill_peak_bytes"] for s in (capped, plain)]
    assert figures[0] - figures[1] == 2 * 2048 * 256_000 * 2
