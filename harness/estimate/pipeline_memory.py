"""Per-stage memory of a pipeline (`spacetime estimate` of pp_* and *_pp strategies).

Each pipeline rank holds its stages' blocks (the first stage the embedding, the last the final norm, the output
projection and the loss) and the activations of the micro-batches it has run forward and not yet backward.
How many depends on the schedule:
  GPipe        every micro-batch: M (all forwards run before any backward);
  1F1B         at most p - i on pipeline rank i (its warm-up forwards, then one in, one out);
  interleaved  (v - 1) r + 2 (p - i - 1) + 1 chunks of one virtual stage each, at most v M (torch's warm-up
               over rounds of r = M // max(1, M // p) micro-batches, and one more forward);
  zero bubble  each chunk from its forward until its deferred weight-gradient step, walked action by action in
               torch's order (harness/estimate/zero_bubble_memory.py);
the last two between GPipe (v M chunks) and 1F1B.  A micro-batch's activations are those of `single` at batch_size / M.
Model state (fp32 masters, gradients, AdamW's moments) is the stage's share, divided over the ranks that shard
it (FSDP2 within a stage); without sharding, stage replicas hold it whole.  FSDP2 inside a pipeline keeps the
stage gathered (reshard_after_forward=False) and its gradients unsharded (the schedule turns gradient sync off
until the last backward), so both are whole from the first forward until the reduce-scatter.  The peak is the
warm-up's end (every chunk in flight, no gradient yet) or a backward: every gradient beside the chunks still
held, and the loss's temporaries or (every backward after a stage's first) a gradient built beside the one kept
and added to it: the stage's last projection's at the backward's start (the output projection's on the last
stage, a block's w2 elsewhere), with its input's gradient, while that micro-batch's chunk is still whole; on the
first stage the embedding's, once it is freed (see `_phases`); or the optimizer step.
Every micro-batch's receive buffers (the input from the stage before, the gradient from the one after, for each
local stage) stay for the step; replicas of a stage average its gradients through one flat copy of them.
Measured against the CPU matrix: benchmarks/pipeline_accuracy.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core.errors import NotModelled
from harness.core.memory import PeakFigures
from harness.core.spec import RunSpec
from harness.estimate.activations import Shapes, head_bytes, saved_in_block
from harness.estimate.model_bytes import OPTIMIZER_STATE, train_width
from harness.estimate.phases import largest_phase
from harness.estimate.zero_bubble_memory import ZbStage, zb_actions, zb_in_flight, zb_phases
from harness.models.pipeline_split import stage_blocks, stages_of_rank
from harness.models.zoo import ModelConfig, config_for
from strategies.pipeline_checks import PipelinePlan


@dataclass
class StageMemory(PeakFigures):
    """One pipeline rank: its stages, their blocks, the micro-batch chunks in flight at its peak, the bytes."""

    rank: int
    stages: tuple[int, ...]
    blocks: tuple[int, ...]
    in_flight: int
    phase: str
    breakdown: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"pp_rank": self.rank, "stages": list(self.stages), "blocks": list(self.blocks),
                "in_flight": self.in_flight, "phase": self.phase, "breakdown": dict(self.breakdown),
                "peak_bytes": self.peak_bytes, "device_bytes": self.device_bytes}


def in_flight(schedule: str, rank: int, pp: int, virtual: int, micro: int) -> int:
    """Micro-batch chunks (one virtual stage's activations for one micro-batch) pipeline rank `rank` holds at
    its peak."""
    if schedule == "gpipe":
        return virtual * micro
    if schedule == "1f1b":
        return min(pp - rank, micro)
    if schedule == "interleaved":  # torch's warm-up (_get_warmup_ops), rounds of M // max(1, M // p), then one
        per_round = micro // max(1, micro // pp)
        return min((virtual - 1) * per_round + 2 * (pp - rank - 1) + 1, virtual * micro)
    if schedule == "zb":  # each chunk from its forward until its deferred weight-gradient step
        return zb_in_flight(zb_actions(rank, pp, virtual, micro))
    raise NotModelled(f"the {schedule} schedule's activations in flight (its backward split into inputs and "
                      "weights, over stages in a V) are not modelled; measure it with `spacetime run`")


def stage_params(cfg: ModelConfig, blocks: range, first: bool, last: bool) -> int:
    """Parameters of a stage: its blocks, the embedding if first, the final norm and output projection if last."""
    head = cfg.vocab_size * cfg.dim
    block = (cfg.param_count() - head * (1 if cfg.tie_embeddings else 2) - cfg.dim) // cfg.n_layers
    return len(blocks) * block + (head if first else 0) + ((cfg.dim + head) if last else 0)


def _chunk_activations(cfg: ModelConfig, micro_spec: RunSpec, blocks: range, last: bool, tp: int) -> float:
    """One micro-batch's saved tensors in a stage: its blocks', the output it sends on (kept for backward),
    and on the last stage the head's (logits, log-softmax)."""
    shapes = Shapes.of(cfg, micro_spec, tp)
    saved = sum(saved_in_block(shapes, micro_spec, i) for i in blocks)
    if last:  # the stage's output, the logits, is kept for backward too (the schedule's forward cache)
        return saved + head_bytes(shapes, micro_spec).forward + shapes.t * cfg.vocab_size * 4.0 / tp
    return saved + shapes.t * cfg.dim * 4.0


def _flight_by_stage(flight: int, pp: int, virtual: int, micro: int) -> list[int]:
    """How the chunks in flight spread over the rank's local stages: torch's interleaved warm-up runs a round of
    r = M // max(1, M // p) micro-batches through each local stage in turn, the rest through the last one."""
    per_round = min(micro // max(1, micro // pp), micro)
    counts = [min(per_round, flight - per_round * j) if flight > per_round * j else 0 for j in range(virtual - 1)]
    counts.append(min(flight - sum(counts), micro))
    for j in range(virtual - 1):  # past the warm-up (every micro-batch in flight): the earlier stages fill up
        counts[j] += min(micro - counts[j], flight - sum(counts))
    return counts


def _phases(cfg: ModelConfig, micro_spec: RunSpec, local: list[range], last: bool, counts: list[int], steady: bool,
            grads: float, accumulate: tuple[float, float], tp: int) -> dict[str, dict[str, float]]:
    """The rank's warm-up end (every micro-batch in flight, no gradient yet, the loss's gradients on the last
    stage) and its backward: all gradients beside the chunks still held, the loss's temporaries, or a gradient
    being accumulated (`accumulate`: the last projection's, made at the backward's start beside its input's
    gradient, and the embedding's, made at its end once the first stage's chunk is freed).  A block's backward
    frees what it saved as it goes, so past its start it holds less: the counting allocator's timeline of a
    middle stage (GPipe, 4 ranks, 2 micro-batches) peaks at the second backward's first two products, w2's
    weight gradient (dim x ffn) and its input's (t x ffn), not at a block's saved bytes over again.  With a
    steady state (1F1B, interleaved: more micro-batches than the warm-up) a forward refills the chunk each
    backward frees; otherwise (GPipe, or no steady state) one chunk of the last local stage (backward first) is
    gone by the time every gradient exists.  `counts`: chunks in flight per local stage."""
    shapes = Shapes.of(cfg, micro_spec, tp)
    chunks = [_chunk_activations(cfg, micro_spec, blocks, last and i == len(local) - 1, tp)
              for i, blocks in enumerate(local)]
    flight = sum(n * c for n, c in zip(counts, chunks, strict=True))
    head = head_bytes(shapes, micro_spec).backward if last else 0.0
    # the backward starts at the stage's last projection: its weight's gradient (`accumulate`) beside its input's
    # (the output projection's: t x dim; a block's widest, w2: t x ffn)
    start = accumulate[0] + shapes.t * (cfg.dim if last else max(cfg.ffn_dim, cfg.q_dim) / tp) * 4.0
    held = flight if steady else flight - chunks[-1]
    return {"warm-up end": {"activations": flight, "temporaries": head},
            "backward": {"grads": grads, "activations": held,
                         "temporaries": max(head, start, accumulate[1] - chunks[0])}}


def _accumulated(cfg: ModelConfig, spec: RunSpec, first: bool, last: bool, tp: int) -> tuple[float, float]:
    """A backward after a stage's first builds each parameter's gradient in a new buffer and adds it to the one
    kept.  The output projection's comes first, while the micro-batch's chunk is whole, so on the last stage it
    is a temporary beside every gradient and chunk (elsewhere a block's widest projection); the embedding's
    (dense, vocabulary x dim) comes last, once the first stage's chunk is freed."""
    widest = max(cfg.vocab_size if last else 0, cfg.ffn_dim, cfg.q_dim)
    embedding = cfg.vocab_size * cfg.dim / tp * train_width(spec) if first else 0.0
    return cfg.dim * widest / tp * train_width(spec), embedding


def _optimizer_temporaries(cfg: ModelConfig, spec: RunSpec, params: float, has_head: bool, tp: int) -> float:
    """AdamW's temporaries: foreach on CUDA (one copy of the stage's parameters), per tensor on the CPU (the
    largest tensor's sqrt and quotient); none for the other optimizers."""
    if spec.optimizer != "adamw":
        return 0.0
    if spec.device == "cuda":
        return params * train_width(spec)
    widest = max(cfg.vocab_size if has_head else 0, cfg.ffn_dim, cfg.q_dim)
    return 2.0 * cfg.dim * widest / tp * train_width(spec)


def _zb_stage(cfg: ModelConfig, spec: RunSpec, micro_spec: RunSpec, blocks: range, first: bool, last: bool,
              grads: float, tp: int) -> ZbStage:
    """One local stage's figures under the zero-bubble schedule (harness/estimate/zero_bubble_memory.py)."""
    shapes = Shapes.of(cfg, micro_spec, tp)
    t, d, widest, lo = shapes.t, cfg.dim, max(cfg.ffn_dim, cfg.q_dim) / tp, 4.0 if shapes.compute == "fp32" else 2.0
    chunk = _chunk_activations(cfg, micro_spec, blocks, last, tp)
    # the gradient at each weight's use: q, k, v, w1, w3 (split by TP), wo, w2 and the two norms (whole)
    blocks_kept = len(blocks) * t * ((shapes.q + 2 * shapes.kv + 2 * shapes.f) / tp + 4 * d) * lo
    kept = 0.0 if first else blocks_kept + (t * (d + cfg.vocab_size / tp) * lo if last else 0.0)
    head_weight = cfg.vocab_size * d / tp * train_width(spec)  # the output projection's, or the embedding's
    later = [d * widest * train_width(spec) + t * d * 4.0]  # a block's widest weight's gradient
    if first:  # a full backward: w2's input gradient beside it, and the embedding's once the chunk is freed
        later += [d * widest * train_width(spec) + t * widest * 4.0, head_weight - chunk]
    if last:  # the output projection's, run last, the blocks' intermediates' gradients freed before it
        later.append(head_weight - blocks_kept)
    if last:  # the loss's backward (two t x V), beside the input gradient it sends and the one before it
        input_peak = head_bytes(shapes, micro_spec).backward + 2 * t * d * 4.0
    else:  # the intermediates' gradients, beside w2's input gradient and the one it sends
        input_peak = kept + t * (widest + d) * 4.0
    return ZbStage(chunk=chunk, kept=kept, freed=2 * t * cfg.vocab_size / tp * 4.0 if last and not first else 0.0,
                   grads=grads, input_peak=input_peak, weight_peak=max(later), left=t * d * 4.0 * (1 if first else 2),
                   first=first)


def predict_stages(spec: RunSpec, plan: PipelinePlan) -> list[StageMemory]:
    """Every pipeline rank's peak (rank i holds stages i, i + p, ...); `plan.shard`: the ranks a stage's state
    is sharded over (FSDP2), `plan.tp`: the tensor-parallel degree inside it."""
    schedule, pp, virtual, micro, shard, tp = (plan.schedule, plan.pp, plan.virtual, plan.micro, plan.shard,
                                               plan.tp)
    if spec.activation_checkpointing != "off" or spec.lora_rank or spec.quant != "none":
        raise NotModelled("pipeline estimate models full fine-tuning without checkpointing")
    cfg = config_for(spec)
    total = pp * virtual
    blocks = stage_blocks(cfg.n_layers, total)
    micro_spec = spec.with_(batch_size=max(spec.batch_size // micro, 1))
    width = train_width(spec)
    master = 2.0 if spec.dtype == "bf16-pure" else 4.0
    out = []
    for rank in range(pp):
        mine = stages_of_rank(rank, pp, virtual)
        params = sum(stage_params(cfg, blocks[s], s == 0, s == total - 1) for s in mine) / tp / shard
        grads = params * width
        held = {"params": params * master, "optimizer": params * OPTIMIZER_STATE.get(spec.optimizer, 8.0) * width / 4,
                # every micro-batch's receive buffers, for each local stage: its input and its output's gradient
                "comm": spec.batch_size * spec.seq_len * cfg.dim * 4.0 * sum((s != 0) + (s != total - 1) for s in mine)}
        flight = in_flight(schedule, rank, pp, virtual, micro)
        if schedule == "zb":  # walked action by action in torch's order
            phases = zb_phases(zb_actions(rank, pp, virtual, micro), {s: _zb_stage(
                cfg, spec, micro_spec, blocks[s], s == 0, s == total - 1,
                stage_params(cfg, blocks[s], s == 0, s == total - 1) / tp * width, tp) for s in mine})
        else:
            phases = _phases(cfg, micro_spec, [blocks[s] for s in mine], total - 1 in mine,
                             _flight_by_stage(flight, pp, virtual, micro),
                             schedule != "gpipe" and micro * virtual > flight, grads * shard,
                             _accumulated(cfg, spec, 0 in mine, total - 1 in mine, tp), tp)
        if shard > 1:  # FSDP2 in a pipeline: gathered from the first forward until the last backward's reduce
            for name in ("warm-up end", "backward"):
                phases[name]["comm"] = params * shard * master
        phases["optimizer step"] = {"grads": grads, "temporaries": _optimizer_temporaries(
            cfg, spec, params, total - 1 in mine or 0 in mine, tp)}
        if shard == 1 and spec.nproc > pp * tp:  # replicas average the gradients through one flat copy of them
            phases["gradient reduce"] = {"grads": grads, "comm": grads}
        breakdown, phase = largest_phase(held, phases, spec.device)
        out.append(StageMemory(rank, tuple(mine), tuple(i for s in mine for i in blocks[s]), flight, phase,
                               breakdown))
    return out
