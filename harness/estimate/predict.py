"""predict: an analytic per-rank memory model of one training step (`spacetime estimate`).

The step is followed through the phases where the allocator's peak can fall, and the largest wins:
  forward end    model state + every saved activation + the logits and their log-softmax;
  backward start the same, the log-softmax's gradient and the logits' gradient (three vocabulary-wide tensors);
  backward end   model state + every gradient (activations freed);
  optimizer step model state + gradients + the optimizer's temporaries (foreach keeps a full-size copy);
  root re-gathered (FSDP full shard) the root's all-gather before backward, beside its gathered parameters.
Model state per rank comes from the strategy's `MemoryProfile` (what it shards, gathers, copies or offloads),
sizes from model_bytes.py, communication buffers from comm.py, DeepSpeed's ZeRO from zero.py; activations
from the tensors autograd saves in a zoo block (activations.py).  The figure is what the allocator holds
(CUDA max allocated, the CPU counter); the CUDA context is a separate line that `fits` adds."""

from __future__ import annotations

from harness.core.memory import MemoryProfile
from harness.core.spec import RunSpec
from harness.estimate.activations import Shapes
from harness.estimate.async_tp_memory import add_workspace
from harness.estimate.comm import Comm, fsdp_phases, gathered_bytes
from harness.estimate.compile_memory import check_compile
from harness.estimate.context_parallel_memory import add_ring_phases, cp_shapes
from harness.estimate.loss_memory import chunked_loss_phases
from harness.estimate.model_bytes import OPTIMIZER_STATE, embedding_grad, lora_params, train_width, weight_bytes
from harness.estimate.op_checkpoint_memory import op_block_bytes
from harness.estimate.phases import Prediction, largest_phase
from harness.estimate.quant_activations import per_block
from harness.estimate.tp_activations import tp_block_bytes, tp_head_bytes
from harness.estimate.zero import predict_zero
from harness.models.zoo import ModelConfig, config_for


def _state(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile) -> dict[str, float]:
    """Persistent model state per rank: params, grads (when all exist), optimizer (with a master copy)."""
    block_w, rest_w = weight_bytes(cfg, spec)
    adapters = lora_params(cfg, spec)
    params = (block_w + rest_w) / prof.tp / prof.param_div + adapters * 4.0 / prof.param_div
    trainable = adapters if spec.lora_rank else cfg.param_count()
    width = train_width(spec)
    grads = trainable * width / prof.tp / prof.grad_div
    if prof.flat and spec.lora_rank:  # LoRA's frozen base weights get (zero) gradients inside the flat one
        grads = (block_w + adapters * 4.0) / prof.grad_div  # as wide as the stored weights
    # AdamW's moments and SGD's momentum take the parameter's dtype; 8-bit AdamW's blocks do not
    scale = width / 4.0 if spec.optimizer in ("adamw", "sgd") else 1.0
    optim = trainable * OPTIMIZER_STATE.get(spec.optimizer, 8.0) * scale / prof.tp / prof.optim_div
    return {"params": params, "grads": grads, "optimizer": optim}


def predict(spec: RunSpec, profile: MemoryProfile, device: str = "cuda") -> Prediction:
    """The per-rank peak of `spec` under `profile`; `device` decides the context (and the offload pool)."""
    check_compile(spec)  # NotModelled: Inductor's saved tensors follow no rule found (compile_memory.py)
    if profile.zero:
        return predict_zero(spec, profile, device)
    cfg = config_for(spec)
    state = _state(cfg, spec, profile)
    if profile.tp > 1 and profile.gathered == "none" and not spec.lora_rank:  # the embedding's gradient is
        whole = embedding_grad(cfg, spec, profile) * (1 - 1 / profile.tp)  # whole, and so is SGD's momentum,
        state["grads"] += whole  # which starts as a clone of it
        state["optimizer"] += whole if spec.optimizer == "sgd" else 0.0
    host = sum(v for k, v in state.items() if k in profile.offload)
    if device == "cuda":  # on a CPU run host and device memory are one pool: offload moves nothing out
        state = {k: (0.0 if k in profile.offload else v) for k, v in state.items()}
    phases = _phases(cfg, spec, profile, device, state)
    held = {"params": state["params"], "optimizer": state["optimizer"]}
    breakdown, phase = largest_phase(held, phases, device)
    breakdown = add_workspace(breakdown, cfg, spec, profile, device)  # async TP (async_tp_memory.py)
    return Prediction(spec, breakdown, phase, int(host))


# phases where, under gradient accumulation, the earlier micro-batches' gradients are what is held
_ACCUMULATING = ("forward start", "last block's forward", "output projection", "forward end", "backward start",
                 "root re-gathered", "last block's backward", "second block's backward", "first block's backward")


def _phases(cfg: ModelConfig, spec: RunSpec, profile: MemoryProfile, device: str,
            state: dict[str, float]) -> dict[str, dict[str, float]]:
    """What each phase of the step adds to the parameters and optimizer state (bytes per rank)."""
    shapes = Shapes.of(cfg, spec, profile.tp, casts_params=profile.casts_params, flat=profile.flat)
    shapes = cp_shapes(shapes, profile.cp)  # a rank's 1/cp of each sequence (context_parallel_memory.py)
    # every block's saved tensors, checkpointing applied; TP's sequence and loss parallelism (tp_activations.py)
    blocks = tp_block_bytes(shapes, spec, profile, per_block(spec))
    blocks = op_block_bytes(shapes, spec, blocks)  # --activation-checkpointing op (op_checkpoint_memory.py)
    head = tp_head_bytes(shapes, spec, profile)

    comm = Comm(cfg, spec, profile, state)
    acts = blocks.total + head.forward
    phases = {
        # one block's intermediates (its saved tensors, or under checkpointing what it drops) beside the rest
        "last block's forward": {"activations": blocks.total + blocks.recompute,
                                 "comm": comm.compute},
        # the logits are made with the root gathered, the loss (log-softmax) runs after FSDP reshards it
        "output projection": {"activations": acts - head.backward / 2 + head.logits,
                              "comm": comm.head},
        "forward end": {"activations": acts, "comm": comm.backward_start},
        "backward start": {"activations": acts, "temporaries": head.backward, "comm": comm.backward_start},
        "backward end": {"grads": state["grads"] - comm.root_grad_shard + comm.last_reduce_grads,
                         "comm": comm.last_reduce},
        "optimizer step": {"grads": state["grads"], "comm": comm.idle,
                           "temporaries": _optimizer_temporaries(cfg, spec, profile, device)},
    }
    if blocks.recompute and profile.gathered == "none":  # the first block recomputed: every gradient but its
        # own and the embedding's exists
        phases["first block's recompute"] = {"grads": state["grads"] - _first_grads(cfg, spec, profile),
                                             "activations": blocks.recompute,
                                             "comm": comm.last_reduce}  # DDP's buckets (no gathering here)
    if profile.gathered != "none":
        phases.update(fsdp_phases(cfg, spec, profile, state, comm, blocks, head))
    # --loss chunked: its terms for the full loss's (loss_memory.py)
    chunked_loss_phases(shapes, spec, blocks, head, phases, sum(gathered_bytes(cfg, spec, profile)))
    add_ring_phases(phases, shapes, profile)  # ring attention's buffers (context_parallel_memory.py)
    if spec.grad_accum > 1:  # FSDP skips its reduce-scatter until the last micro-batch: unsharded until then
        accumulated = state["grads"] * (profile.grad_div if profile.gathered != "none" else 1)
        for name in _ACCUMULATING:
            if name in phases:
                phases[name]["grads"] = accumulated
    return phases


def _first_grads(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile) -> float:
    """The gradients the first block and the embedding add last in backward."""
    if spec.lora_rank:
        return lora_params(cfg, spec) / cfg.n_layers * 4.0 / prof.grad_div
    block_w, _ = weight_bytes(cfg, spec)
    embedding = cfg.vocab_size * cfg.dim * train_width(spec)
    return (block_w / cfg.n_layers + embedding) / prof.tp / prof.grad_div


def _optimizer_temporaries(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, device: str) -> float:
    """torch's AdamW runs foreach on CUDA: one full-size temporary (sqrt of the second moments, divided in
    place); on CPU it runs per tensor, and the largest parameter's sqrt and its quotient set the peak.  SGD
    updates its momentum in place, but under plain TP the embedding's whole gradient is split to the
    momentum's shard by a copy."""
    trainable = lora_params(cfg, spec) if spec.lora_rank else cfg.param_count()
    width = train_width(spec)
    plain_tp = prof.tp > 1 and prof.gathered == "none"
    if spec.optimizer == "sgd" and plain_tp and not spec.lora_rank:
        return cfg.vocab_size * cfg.dim / prof.tp * width
    if spec.optimizer != "adamw" or "optimizer" in prof.offload:
        return 0.0
    if device == "cuda" and not plain_tp:  # plain TP runs per tensor
        return trainable * width / prof.tp / prof.optim_div
    widest = max(cfg.vocab_size, cfg.ffn_dim, cfg.q_dim)  # the embedding but in a shape of a few hundred wide
    largest = cfg.dim * widest / prof.tp if not spec.lora_rank else cfg.ffn_dim * spec.lora_rank
    return 2 * largest * width / prof.optim_div  # sqrt(v) and sqrt(v) / bias correction, briefly both alive
