"""What a block keeps for backward when its base projections are quantized (`--quant`), counted from what the
quantized layers' autograd functions keep on the CPU: `torch.autograd.graph.saved_tensors_hooks` plus the
tensors a custom Function holds on its ctx (tests/unit/test_quant_activations.py checks it tensor by tensor).

  nf4   bitsandbytes' Linear4bit casts its input to its compute dtype (bf16 under --dtype bf16, fp32
        otherwise) and calls MatMul4Bit, which keeps only the packed weight and its quant state (both exist
        before the step): no input and no 16-bit weight copy.  It casts its output back to its input's dtype,
        so under autocast every projection's output is fp32, the residual's width: w1's and w3's outputs and
        silu's are fp32, and q, k, v reach SDPA in fp32 (autocast's 16-bit copies of them are what SDPA keeps,
        the bytes it keeps unquantized).  peft makes the adapters in the layer's compute dtype: under bf16
        they are bf16 parameters, so autocast keeps no copies of A and B.
  int8  bitsandbytes' Linear8bitLt trains on the CPU through MatMul8bitFp, which keeps its input as given
        (ctx.A: the norms' fp32 outputs, SDPA's output, the MLP product) for every projection, trained or not,
        and dequantizes the weight per call (a temporary).  Its F.linear runs under autocast: outputs are
        16-bit as unquantized, and no weight copy is kept.  The adapters are fp32, with autocast's copies.
        On CUDA it trains through MatMul8bitLt instead, which keeps the input as given too (ctx.tensors) but
        returns its output in the input's dtype, fp32 under autocast, as nf4 does (read from bitsandbytes'
        source; the CPU path is the one checked here).
  nf4-torchao  torchao's LinearNF4 keeps only the NF4 weight (a parameter; under FSDP2 the gathered one,
        whose storage FSDP frees after forward and gathers again for backward) and dequantizes it to the
        input's dtype per call; its F.linear runs under autocast, so outputs are 16-bit as unquantized.  The
        NF4 weight and peft's adapters are in the compute dtype, as under nf4.
The adapters keep their input and A's output.  peft casts an adapter's input to the adapter's dtype, then
autocast casts it to 16 bits: under autocast each adapted projection keeps a 16-bit copy of its own, except
where the input is already in the adapter's (16-bit) dtype, SDPA's output under nf4.  The norms, rotary
and SDPA are as in activations.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from harness.core.errors import NotModelled
from harness.core.spec import RunSpec
from harness.estimate.activations import (
    Shapes,
    attention_saved,
    extra_norms,
    norm_saved,
    saved_in_block,
    trained_weights,
)

# --quant values whose layers cast their output back to the input's dtype (fp32 under autocast)
OUTPUT_IN_INPUT_DTYPE = ("nf4",)
# --quant values whose adapters are made in the compute dtype (no autocast copies of A and B)
ADAPTERS_IN_COMPUTE_DTYPE = ("nf4", "nf4-torchao")
# --quant values whose matmul keeps its input whether the weight trains or not
KEEPS_INPUT = ("int8",)


def per_block(spec: RunSpec) -> Callable[[Shapes, RunSpec, int], float]:
    """The rule for one block's saved tensors: quantized or not."""
    return quant_saved_in_block if spec.quant != "none" else saved_in_block


def quant_saved_in_block(s: Shapes, spec: RunSpec, layer: int = 0) -> float:
    """Bytes block `layer` keeps for backward with quantized base projections (no checkpointing)."""
    _, adapted = trained_weights(spec)
    auto = s.compute == "autocast"
    lo = 4.0 if s.compute == "fp32" else 2.0
    t, d, f, tp = s.t, s.d, s.f, s.tp
    q = s.q or s.d
    # on CUDA bitsandbytes trains int8 through MatMul8bitLt, whose output takes its input's dtype
    fp32_out = auto and (spec.quant in OUTPUT_IN_INPUT_DTYPE or (spec.quant == "int8" and spec.device == "cuda"))
    out_bytes = 4.0 if fp32_out else lo  # projection outputs
    keeps = spec.quant in KEEPS_INPUT
    kind = s.attention[layer] if s.attention else "causal"
    if fp32_out and kind != "causal":
        raise NotModelled(f"--quant {spec.quant} under autocast with {kind} attention: its inputs reach the "
                          "attention in fp32, which the written-out and masked paths are not counted for")

    def group(names: tuple[str, ...], width: float) -> float:
        """Inputs q/k/v (norm 1's output) or w1/w3 (norm 2's) keep: one shared input when the matmul keeps
        it or an adapter does; under autocast the matmul keeps the fp32 input, each adapter a 16-bit copy."""
        wanted = sum(n in adapted for n in names)
        if auto:
            return (t * width * 4.0 if keeps else 0.0) + wanted * t * width * 2.0
        return t * width * lo if (keeps or wanted) else 0.0

    inputs = group(("wq", "wk", "wv"), d) + group(("w1", "w3"), d)
    # w2's input, the MLP product, and wo's, SDPA's output (a view of it): as given when the matmul keeps
    # them or (outside autocast) an adapter does; under autocast an adapter keeps a 16-bit copy of its own
    # unless its input is already in its dtype (peft casts the input to the adapter's dtype first, then
    # autocast casts that to 16 bits)
    if auto:
        fp32_adapters = spec.quant not in ADAPTERS_IN_COMPUTE_DTYPE
        inputs += t * f / tp * ((out_bytes if keeps else 0.0) + (2.0 if "w2" in adapted else 0.0))
        inputs += t * q / tp * 2.0 if fp32_adapters and "wo" in adapted else 0.0
    else:
        inputs += t * f / tp * lo if (keeps or "w2" in adapted) else 0.0
    widths = {"wq": (d, q / tp), "wk": (d, s.kv / tp), "wv": (d, s.kv / tp), "wo": (q / tp, d),
              "w1": (d, f / tp), "w3": (d, f / tp), "w2": (f / tp, d)}
    copies = 0.0
    if auto and spec.quant not in ADAPTERS_IN_COMPUTE_DTYPE:  # 16-bit copies of fp32 adapters
        copies = sum((widths[n][0] + widths[n][1]) * spec.lora_rank * 2.0 for n in adapted)
    lora = len(adapted) * t * spec.lora_rank * lo  # A's output
    attention = attention_saved(s, kind, keeps or "wo" in adapted)
    mlp = 3 * t * f / tp * out_bytes  # w1's and w3's outputs and silu's
    norms = extra_norms(replace(s, compute="fp32") if fp32_out else s, False)
    return 2 * norm_saved(s, False) + inputs + copies + lora + attention + mlp + norms
