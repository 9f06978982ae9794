"""What context parallelism changes in a step's memory (part of predict, harness/estimate/predict.py).

Under context parallelism (cp, fsdp_cp, fsdp_tp_cp) each of the cp ranks holds 1/cp of every sequence from the
embedding to the loss: every saved activation, the logits and the loss's tensors are those of t / cp tokens
(t = batch x seq), so predict counts them on `cp_shapes` (every rule of activations.py and tp_activations.py is
linear in the tokens for causal SDPA, the only attention ring attention takes).  Ring attention over SDPA
(torch 2.13, torch/distributed/tensor/experimental/_context_parallel/_attention.py, load-balanced, K/V rotated
by all-gather, its default and torchtitan's) saves what SDPA saves on the rank's shard: its q, k, v, output
and log-sum-exp.  What it adds are buffers alive while one block's attention runs (q width q/tp; K/V as SDPA
gets them, repeated to the query heads under GQA; lo the compute width, 4 in fp32, else 2):

  forward   comm: the K and V of the whole sequence, all-gathered (2 x t x kv x lo), and the local K and V
            concatenated to be sent (2 x t/cp x kv x lo); temporaries: the merged output and log-sum-exp in
            fp32 (convert_to_f32): t/cp x (q/tp + heads/tp) x 4;
  backward  comm: the same all-gather of K and V and its send buffer, and the K/V gradients rotated by
            all-to-all in fp32, sent and received (2 x 2 x t/cp x kv x 4); temporaries: the fp32
            accumulators of dq, dk, dv (t/cp x (q/tp + 2 kv) x 4) and one step's gradients from the
            kernel (t/cp x (q/tp + 2 kv) x lo).

The forward's buffers join the last block's forward; the backward's join the last block's backward (FSDP's
phase, with its gathered block and gradients) as a phase of their own.  Parameters, gradients and optimizer
state are sharded over dp_shard x cp (the strategy's MemoryProfile), as torchtitan's FSDP mesh folds cp in.

Checked against figures already held: at cp = c the saved activations are those of seq / c, so fsdp_cp on
2 ranks (cp 2, dp_shard 1) at batch 2 x seq 128 predicts, outside the ring's buffers, exactly what
fsdp_full_shard on 2 ranks predicts at batch 2 x seq 64, the same 128 tokens a rank and the same shards:
the accuracy matrix (benchmarks/results/accuracy-cpu.json) measured that case (tiny, fp32, no checkpointing)
at 67,026,608 bytes a rank, within its bound of the prediction (tests/unit/test_cp_async_tp.py holds both).
Measured on CPU (cp and fsdp_cp run there, harness/train/cpu_ring_attention.py), tiny, fp32: the matrix
benchmarks/results/cp-accuracy-cpu.json (tests/accuracy/test_cp_accuracy.py holds it within 5%; the smallest
per-rank peak over ranks and 2 repeats): cp on 2 ranks at 4 x 64 +0.15%, at 2 x 128 +0.11%, with full
checkpointing -0.04%; fsdp_cp on 4 ranks (dp 2 x cp 2) at 2 x 64 a rank -0.21%.  A single run can measure a
rank 2-3 MB higher (70,196,912 against 67,152,384 once at 4 x 64): gloo freeing the ring's finished sends and
receives late, as for the other collectives.

For tiny (dim 256, 8 heads, 4 kv heads repeated to 8 under GQA) at batch 2 x seq 128, cp 2, fp32: t/cp = 128
tokens; the forward's comm is 2 x 256 x 256 x 4 + 2 x 128 x 256 x 4 = 786,432 bytes and its temporaries
128 x (256 + 8) x 4 = 135,168; the backward adds 2 x 256 x 256 x 4 + 2 x 128 x 256 x 4 + 4 x 128 x 256 x 4 =
1,310,720 of comm and 128 x 768 x 4 + 128 x 768 x 4 = 786,432 of temporaries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.core.memory import MemoryProfile
from harness.estimate.activations import Shapes


@dataclass(frozen=True)
class RingBytes:
    comm: float  # communication buffers: the gathered K/V, the send buffers, the rotated K/V gradients
    temporaries: float  # the fp32 merge (forward) or accumulators and a step's gradients (backward)


def cp_shapes(s: Shapes, cp: int) -> Shapes:
    """The shapes of one rank's shard of the sequence: t / cp tokens."""
    return s if cp == 1 else replace(s, t=s.t // cp)


def _widths(s: Shapes) -> tuple[float, float, float]:
    """(q width, K/V width as SDPA gets them, compute width) on one rank."""
    q = (s.q or s.d) / s.tp
    return q, (q if s.gqa else s.kv / s.tp), (4.0 if s.compute == "fp32" else 2.0)


def ring_forward(s: Shapes, cp: int) -> RingBytes:
    """One block's ring attention forward; `s` holds the rank's shard (cp_shapes)."""
    q, kv, lo = _widths(s)
    comm = 2 * s.t * cp * kv * lo + 2 * s.t * kv * lo
    return RingBytes(comm, s.t * (q + s.heads / s.tp) * 4.0)


def ring_backward(s: Shapes, cp: int) -> RingBytes:
    """One block's ring attention backward; `s` holds the rank's shard (cp_shapes)."""
    q, kv, lo = _widths(s)
    comm = 2 * s.t * cp * kv * lo + 2 * s.t * kv * lo + 2 * 2 * s.t * kv * 4.0
    return RingBytes(comm, s.t * (q + 2 * kv) * 4.0 + s.t * (q + 2 * kv) * lo)


def add_ring_phases(phases: dict[str, dict[str, float]], s: Shapes, profile: MemoryProfile) -> None:
    """Ring attention's buffers in the last block's forward, and its backward as a phase of its own beside
    the last block's backward (or, without FSDP's phases, the start of backward)."""
    if profile.cp == 1:
        return
    fwd, bwd = ring_forward(s, profile.cp), ring_backward(s, profile.cp)
    last = phases["last block's forward"]
    last["comm"] = last.get("comm", 0.0) + fwd.comm
    last["temporaries"] = last.get("temporaries", 0.0) + fwd.temporaries
    base = dict(phases.get("last block's backward") or phases["backward start"])
    base["comm"] = base.get("comm", 0.0) + bwd.comm
    base["temporaries"] = base.get("temporaries", 0.0) + bwd.temporaries
    phases["last block's ring attention"] = base
