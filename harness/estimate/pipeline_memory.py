"""Per-stage memory of a pipeline (`spacetime estimate` of pp_* and *_pp strategies).

Each pipeline rank holds its stages' blocks (the first stage the embedding, the last the final norm, the output
projection and the loss) and, at its first backward, its gradients beside the activations of the micro-batches
it has run forward and not yet backward.  How many depends on the schedule:
  GPipe        every micro-batch: M (all forwards run before any backward);
  1F1B         at most p - i on pipeline rank i (its warm-up forwards, then one in, one out);
  interleaved  (v - 1) p + 2 (p - i - 1) + 1 chunks of one virtual stage each, at most v M (Megatron's warm-up);
between GPipe (v M chunks) and 1F1B.  A micro-batch's activations are those of `single` at batch_size / M.
Model state (fp32 masters, gradients, AdamW's moments) is the stage's share, divided over the ranks that shard
it (FSDP2 within a stage); without sharding, stage replicas hold it whole.  A stage's first backward makes
all its gradients while every micro-batch in flight is still held (GPipe: all of them; 1F1B: its warm-up's).
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
    if schedule == "interleaved":
        return min((virtual - 1) * pp + 2 * (pp - rank - 1) + 1, virtual * micro)
    raise NotModelled(f"the {schedule} schedule's activations in flight (its backward split into inputs and "
                      "weights) are not modelled; measure it with `spacetime run`")


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
    if last:
        return saved + head_bytes(shapes, micro_spec).forward
    return saved + shapes.t * cfg.dim * 4.0


def _optimizer_temporaries(cfg: ModelConfig, spec: RunSpec, params: float, has_head: bool, tp: int) -> float:
    """AdamW's temporaries: foreach on CUDA (one copy of the stage's parameters), per tensor on the CPU (the
    largest tensor's sqrt and quotient); none for the other optimizers."""
    if spec.optimizer != "adamw":
        return 0.0
    if spec.device == "cuda":
        return params * train_width(spec)
    widest = max(cfg.vocab_size if has_head else 0, cfg.ffn_dim, cfg.q_dim)
    return 2.0 * cfg.dim * widest / tp * train_width(spec)


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
        chunks = [_chunk_activations(cfg, micro_spec, blocks[s], s == total - 1, tp) for s in mine]
        flight = in_flight(schedule, rank, pp, virtual, micro)
        acts = max(chunks) * flight if virtual > 1 else chunks[0] * flight
        head = head_bytes(Shapes.of(cfg, micro_spec, tp), micro_spec).backward if total - 1 in mine else 0.0
        grads = params * width
        optim = params * OPTIMIZER_STATE.get(spec.optimizer, 8.0) * width / 4.0
        held = {"params": params * master, "optimizer": optim}
        forward = {"grads": grads, "activations": acts, "temporaries": head}
        step = {"grads": grads, "activations": 0.0,
                "temporaries": _optimizer_temporaries(cfg, spec, params, total - 1 in mine or 0 in mine, tp)}
        phases = {"first backward": forward, "optimizer step": step}
        breakdown, phase = largest_phase(held, phases, spec.device)
        out.append(StageMemory(rank, tuple(mine), tuple(i for s in mine for i in blocks[s]), flight, phase,
                               breakdown))
    return out
