"""The weights a model holds once loaded for inference, by dtype and quantization, and the bytes-per-parameter
rule of thumb beside them.

Unquantized, every weight is stored in the compute width: 4 B (fp32) or 2 B (bf16, fp16, bf16-pure).  Under
--quant (harness/models/quantize.py) the block projections (wq, wk, wv, wo, w1, w2, w3) become bitsandbytes
layers; the embedding, the norms and the output head stay in the compute width.  What bitsandbytes keeps:
  int8  Linear8bitLt over Int8Params (threshold 0: no outlier columns): the int8 matrix (CB) and one fp32
        scale per output row (SCB); nothing else stays once the weight is on its device.
  nf4   Linear4bit over Params4bit (blocksize 64, compress_statistics on: double quantization): two weights per
        byte, one absmax per 64-block quantized to uint8, and for those the nested state: one fp32 absmax per
        256 of them, an fp32 offset, the 16-entry NF4 code and the 256-entry dynamic map (fp32) per tensor
        (each quant state holds its own copy of the map), and once the map bitsandbytes caches.
or torchao tensors (harness/models/quant_torchao.py, harness/core/torchao_choices.py), which keep:
  nf4-torchao   NF4Tensor in the compute dtype: two weights per byte, one int8 scaler per 64-block, one
                quantization factor per 256 of those and a scaler mean in the compute width, and the 16-entry
                NF4 table in it.
  int8-torchao  Int8Tensor: the int8 matrix, one fp32 scale and one int8 zero point per output row.
  int4-torchao  the tinygemm layout (tile_packed_to_4d): the weight padded to inputs x 1024 and outputs x 8,
                two values per byte, and a bf16 scale and zero per group of 128 padded inputs and output.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.spec import RunSpec
from harness.core.units import GIB
from harness.models.zoo import ModelConfig

NF4_BLOCK = 64  # bitsandbytes' default blocksize for Params4bit
NESTED_BLOCK = 256  # the blocksize double quantization uses for the absmax values
NF4_CODE = 16 * 4  # the NF4 code table of each tensor (fp32)
DYNAMIC_MAP = 256 * 4  # the dynamic map the nested absmax is quantized with: one per tensor, one cached
RULE_BYTES = {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}  # the rule of thumb, bytes per parameter
INT4_GROUP, INT4_PAD_IN, INT4_PAD_OUT = 128, 1024, 8  # torchao's int4 tinygemm layout (Int4WeightOnlyConfig)


def compute_width(spec: RunSpec) -> float:
    """Bytes per element of what inference computes and stores unquantized: the 16-bit dtypes hold 16-bit
    weights (no fp32 masters without an optimizer), fp32 holds fp32."""
    return 4.0 if spec.dtype == "fp32" else 2.0


def linear_shapes(cfg: ModelConfig) -> list[tuple[int, int]]:
    """(in, out) of one block's projections."""
    d, q, kv, f = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_dim
    return [(d, q), (d, kv), (d, kv), (q, d), (d, f), (d, f), (f, d)]


def _multiple(n: int, of: int) -> int:
    return -(-n // of) * of


def quantizer_extra(in_features: int, out_features: int, quant: str, width: float = 4.0) -> float:
    """What the quantizer keeps for one projection beyond its quantized weights at QUANT_WIDTH (scales, nested
    state, padding); `width`: the compute width, which nf4-torchao keeps its factors in."""
    if quant == "int8":
        return out_features * 4.0  # SCB: one fp32 scale per output row
    if quant == "int8-torchao":
        return out_features * (4.0 + 1.0)  # an fp32 scale and an int8 zero point per output row
    if quant == "nf4-torchao":
        blocks = in_features * out_features // NF4_BLOCK
        return blocks * 1.0 + (blocks // NESTED_BLOCK + 1 + 16) * width
    if quant == "int4-torchao":
        padded_in, padded_out = _multiple(in_features, INT4_PAD_IN), _multiple(out_features, INT4_PAD_OUT)
        packed = padded_in * padded_out / 2 + padded_in // INT4_GROUP * padded_out * 2 * 2.0
        return packed - in_features * out_features * 0.5
    if quant == "nf4":
        blocks = -(-in_features * out_features // NF4_BLOCK)
        nested = -(-blocks // NESTED_BLOCK)
        # uint8 absmax, fp32 nested absmax, offset, NF4 code, the nested state's map
        return blocks * 1.0 + nested * 4.0 + 4.0 + NF4_CODE + DYNAMIC_MAP
    return 0.0


QUANT_WIDTH = {"int8": 1.0, "nf4": 0.5, "nf4-torchao": 0.5, "int8-torchao": 1.0, "int4-torchao": 0.5}
QUANT_RULE = {"int8": "int8", "nf4": "int4", "nf4-torchao": "int4", "int8-torchao": "int8", "int4-torchao": "int4"}


@dataclass(frozen=True)
class LoadedWeights:
    """One whole model's weights as loaded (bytes, before any sharding)."""

    linear: float  # block projections, quantized or in the compute width
    rest: float  # embedding, norms, output head: always in the compute width
    scales: float  # what the quantizer keeps beyond the quantized weights
    linear_params: int
    rest_params: int

    @property
    def total(self) -> float:
        return self.linear + self.rest + self.scales

    def block(self, n_layers: int) -> float:
        """One block's projections and their scales (its norms are part of `rest`)."""
        return (self.linear + self.scales) / n_layers


def loaded_weights(cfg: ModelConfig, spec: RunSpec) -> LoadedWeights:
    width = compute_width(spec)
    shapes = linear_shapes(cfg)
    linear_params = cfg.n_layers * sum(i * o for i, o in shapes)
    rest_params = cfg.param_count() - linear_params
    if spec.quant == "none":
        return LoadedWeights(linear_params * width, rest_params * width, 0.0, linear_params, rest_params)
    scales = cfg.n_layers * sum(quantizer_extra(i, o, spec.quant, width) for i, o in shapes)
    scales += DYNAMIC_MAP if spec.quant == "nf4" else 0.0
    return LoadedWeights(linear_params * QUANT_WIDTH[spec.quant], rest_params * width, scales, linear_params,
                         rest_params)


# the rule-of-thumb rows, each with the spec fields that load a model that way
RULE_ROWS = {"fp32": {"dtype": "fp32", "quant": "none"}, "bf16": {"dtype": "bf16", "quant": "none"},
             "int8": {"dtype": "bf16", "quant": "int8"}, "int4": {"dtype": "bf16", "quant": "nf4"},
             "int8 torchao": {"dtype": "bf16", "quant": "int8-torchao"},
             "int4 torchao": {"dtype": "bf16", "quant": "int4-torchao"}}


def rule_table(cfg: ModelConfig, spec: RunSpec) -> list[dict[str, float | str]]:
    """Per row of the rule of thumb: the rule's figure (parameters x bytes), the estimate, and what the
    difference is made of (the quantizer's scales; the layers that stay 16-bit), all in GiB."""
    rows: list[dict[str, float | str]] = []
    n = cfg.param_count()
    for name, fields in RULE_ROWS.items():
        w = loaded_weights(cfg, spec.with_(**fields))
        rule = RULE_BYTES[QUANT_RULE.get(fields["quant"], name)]
        unquantized = w.rest_params * (compute_width(spec.with_(**fields)) - rule)
        rows.append({"row": name, "rule_gib": n * rule / GIB, "estimate_gib": w.total / GIB,
                     "scales_gib": w.scales / GIB, "unquantized_gib": unquantized / GIB})
    return rows
