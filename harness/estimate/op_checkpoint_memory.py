"""--activation-checkpointing op in `estimate` (part of predict, harness/estimate/predict.py): what each block
keeps under torchtitan's op-level policy (harness/models/checkpointing.py), t tokens, d the model width, q the
query width, kv the key/value width, f the MLP width, in the compute width w (fp32: 4, else 2):
  kept      the block's input (the residual, fp32 but under 16-bit parameters) and the outputs the policy
            saves: the 1st, 3rd, 5th and 7th matmul of the block (wq: t q, wv: t kv, w1: t f, w2: t d) and
            SDPA's output (t q) with its log-sum-exp (t heads, fp32).
  backward  a block recomputes the rest: autograd's saved tensors of the block (activations.py) beside what
            is kept, less what is both (w1's output, SDPA's output and log-sum-exp, and v when it is not
            repeated for grouped-query attention).
Held to `simulate` on the CPU matrix.  Not modelled: LoRA (its adapters' matmuls move which projections the
count keeps), blocks that do not attend through SDPA (softcapped attention, written out), and tensor
parallelism.
"""

from __future__ import annotations

from harness.core.errors import NotModelled
from harness.core.spec import RunSpec
from harness.estimate.activations import BlockBytes, Shapes, saved_in_block


def op_block_bytes(s: Shapes, spec: RunSpec, blocks: BlockBytes) -> BlockBytes:
    """`blocks` (activations.py's count) for --activation-checkpointing op; unchanged for any other mode."""
    if spec.activation_checkpointing != "op":
        return blocks
    why = ("LoRA's adapter matmuls" if spec.lora_rank else "tensor parallelism" if s.tp > 1 else
           "attention written out (softcapped)" if "softcap" in s.attention else "")
    if why:
        raise NotModelled(f"activation_checkpointing=op: which outputs the policy keeps under {why} is not "
                          "counted; `spacetime simulate` runs it")
    lo = 4.0 if s.compute == "fp32" else 2.0
    res = 2.0 if s.compute == "cast" else 4.0
    q = s.q or s.d
    mms = s.t * (q + s.kv + s.f + s.d) * lo
    sdpa = s.t * q * lo + s.t * s.heads * 4.0
    kept = s.t * s.d * res + mms + sdpa
    both = s.t * s.f * lo + sdpa + (0.0 if s.gqa else s.t * s.kv * lo)
    per = saved_in_block(s, spec, 0)
    return BlockBytes(s.layers * kept, per - both, kept + per - both)
