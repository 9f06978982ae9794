"""predict: an analytic per-rank memory model of one training step (`spacetime estimate`).

The step is followed through the phases where the allocator's peak can fall, and the largest wins:
  forward end    model state + every saved activation + the logits and their log-softmax;
  backward start the same, the log-softmax's gradient and the logits' gradient (three vocabulary-wide tensors);
  backward end   model state + every gradient (activations freed);
  optimizer step model state + gradients + the optimizer's temporaries (foreach keeps a full-size copy);
  root re-gathered (FSDP full shard) the root's all-gather before backward, beside its gathered parameters.
Model state per rank comes from the strategy's `MemoryProfile` (what it shards, gathers, copies or offloads);
activations from the tensors autograd saves in a zoo block (`activations.py`).  The figure is what the
allocator holds (CUDA max allocated, the CPU counter); the CUDA context is a separate line that `fits` adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.activations import Shapes, block_saved_bytes, head_bytes
from harness.spec import RunSpec
from harness.zoo import ModelConfig, config_for

CATEGORIES = ("params", "grads", "optimizer", "activations", "temporaries", "comm", "context")
CUDA_CONTEXT_BYTES = 600 * 2**20  # torch's CUDA context and kernels on an H100 (0.5-1.3 GB by driver/build)
OPTIMIZER_STATE = {"adamw": 8.0, "adamw8bit": 2.0 + 8 / 256, "sgd": 4.0}  # bytes per trainable parameter
QUANT_BYTES = {"none": None, "int8": 1.0 + 4 / 4096, "nf4": 0.5 + 4 / 64}  # per base weight, with scales


@dataclass(frozen=True)
class MemoryProfile:
    """Where a strategy keeps model state on one rank, as divisors of the whole model's bytes."""

    param_div: int = 1
    grad_div: int = 1
    optim_div: int = 1
    gathered: str = "none"  # "unit": one block gathered at a time (+ one prefetched); "all": fwd-to-bwd
    grad_buckets: bool = False  # DDP copies gradients into all-reduce buckets of the same total size
    tp: int = 1  # tensor-parallel degree: divides block weights and the activations inside attention/MLP
    offload: frozenset[str] = frozenset()  # terms held in host memory: "params", "grads", "optimizer"
    casts_params: bool = False  # 16-bit --dtype: the strategy gathers 16-bit params (FSDP's policy), no autocast
    keeps_root: bool = False  # FSDP2's default for the root: its gathered parameters kept from forward to backward
    zero: int = 0  # DeepSpeed ZeRO stage: its buffers are modelled in harness/predict_zero.py
    flat: bool = False  # FSDP1's flat parameters: a unit's gradient covers all of it once anything in it trains


class PeakFigures:
    """A per-rank breakdown by CATEGORIES (predicted or simulated) and the totals read from it."""

    breakdown: dict[str, int]

    @property
    def peak_bytes(self) -> int:
        """The allocator's peak (no CUDA context), comparable with a record's peak_bytes."""
        return sum(v for k, v in self.breakdown.items() if k != "context")

    @property
    def device_bytes(self) -> int:
        return self.peak_bytes + self.breakdown["context"]


@dataclass
class Prediction(PeakFigures):
    spec: RunSpec
    breakdown: dict[str, int]  # bytes per rank at the peak phase
    phase: str
    host_bytes: int  # what offload keeps in host memory

    def to_json(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "device_bytes": self.device_bytes, "phase": self.phase,
                "breakdown": dict(self.breakdown), "host_bytes": self.host_bytes}


def weight_bytes(cfg: ModelConfig, spec: RunSpec) -> tuple[float, float]:
    """(block linear weights, everything else) in bytes, as stored: fp32 masters unless pure bf16; quantized
    block weights under --quant."""
    base = 2.0 if spec.dtype == "bf16-pure" else 4.0
    kv = cfg.n_kv_heads * cfg.head_dim
    linear = cfg.n_layers * (2 * cfg.dim * cfg.dim + 2 * cfg.dim * kv + 3 * cfg.dim * cfg.ffn_dim)
    rest = cfg.param_count() - linear
    q = QUANT_BYTES[spec.quant]
    return linear * (q if q is not None else base), rest * base


def lora_params(cfg: ModelConfig, spec: RunSpec) -> int:
    if spec.lora_rank == 0:
        return 0
    from harness.knobs import lora_modules

    kv = cfg.n_kv_heads * cfg.head_dim
    shapes = {"wq": (cfg.dim, cfg.dim), "wk": (cfg.dim, kv), "wv": (cfg.dim, kv), "wo": (cfg.dim, cfg.dim),
              "w1": (cfg.dim, cfg.ffn_dim), "w3": (cfg.dim, cfg.ffn_dim), "w2": (cfg.ffn_dim, cfg.dim)}
    targets = lora_modules(spec.lora_targets)
    per_layer = sum(spec.lora_rank * (i + o) for name, (i, o) in shapes.items() if name in targets)
    return cfg.n_layers * per_layer


def train_width(spec: RunSpec) -> float:
    """Bytes per element of what trains: bf16 under --dtype bf16-pure, except LoRA adapters, which peft keeps
    in fp32 over a 16-bit base; fp32 otherwise (mixed precision trains fp32 masters)."""
    return 2.0 if spec.dtype == "bf16-pure" and not spec.lora_rank else 4.0


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
    if profile.zero:
        from harness.predict_zero import predict_zero

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
    return Prediction(spec, *largest_phase(held, phases, device), int(host))


# phases where, under gradient accumulation, the earlier micro-batches' gradients are what is held
_ACCUMULATING = ("forward start", "last block's forward", "output projection", "forward end", "backward start",
                 "root re-gathered", "last block's backward", "second block's backward", "first block's backward")


def _phases(cfg: ModelConfig, spec: RunSpec, profile: MemoryProfile, device: str,
            state: dict[str, float]) -> dict[str, dict[str, float]]:
    """What each phase of the step adds to the parameters and optimizer state (bytes per rank)."""
    shapes = Shapes.of(cfg, spec, profile.tp, casts_params=profile.casts_params, flat=profile.flat)
    blocks = block_saved_bytes(shapes, spec)  # every block's saved tensors, checkpointing applied
    head = head_bytes(shapes, spec)
    from harness.predict_comm import Comm, fsdp_phases  # it builds on this module's terms

    comm = Comm(cfg, spec, profile, state)
    acts = blocks.total + head.forward
    phases = {
        # one block's intermediates (its saved tensors, or under checkpointing what it drops) beside the rest
        "last block's forward": {"activations": blocks.total, "temporaries": blocks.recompute,
                                 "comm": comm.compute},
        # the logits are made with the root gathered, the loss (log-softmax) runs after FSDP reshards it
        "output projection": {"activations": acts - head.backward / 2, "temporaries": head.logits,
                              "comm": comm.head},
        "forward end": {"activations": acts, "comm": comm.backward_start},
        "backward start": {"activations": acts, "temporaries": head.backward, "comm": comm.backward_start},
        "backward end": {"grads": state["grads"] - comm.root_grad_shard, "comm": comm.last_reduce},
        "optimizer step": {"grads": state["grads"], "comm": comm.idle,
                           "temporaries": _optimizer_temporaries(cfg, spec, profile, device)},
    }
    if blocks.recompute and profile.gathered == "none":  # the first block recomputed: every gradient but its
        # own and the embedding's exists
        phases["first block's recompute"] = {"grads": state["grads"] - _first_grads(cfg, spec, profile),
                                             "temporaries": blocks.recompute, "comm": comm.last_reduce}
    if profile.gathered != "none":
        phases.update(fsdp_phases(cfg, spec, profile, state, comm, blocks, head))
    if spec.grad_accum > 1:  # FSDP skips its reduce-scatter until the last micro-batch: unsharded until then
        accumulated = state["grads"] * (profile.grad_div if profile.gathered != "none" else 1)
        for name in _ACCUMULATING:
            if name in phases:
                phases[name]["grads"] = accumulated
    return phases


def largest_phase(held: dict[str, float], phases: dict[str, dict[str, float]],
                  device: str) -> tuple[dict[str, int], str]:
    """The breakdown at the phase with the largest total (what every phase holds plus what it adds), with the
    CUDA context on a CUDA target, and the phase's name."""
    best, best_parts = "", {"total": -1.0}
    for name, extra in phases.items():
        parts = {k: held.get(k, 0.0) + extra.get(k, 0.0) for k in CATEGORIES[:-1]}
        if sum(parts.values()) > sum(best_parts.values()):
            best, best_parts = name, parts
    context = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    return {k: int(best_parts[k]) for k in CATEGORIES[:-1]} | {"context": context}, best


def _first_grads(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile) -> float:
    """The gradients the first block and the embedding add last in backward."""
    if spec.lora_rank:
        return lora_params(cfg, spec) / cfg.n_layers * 4.0 / prof.grad_div
    block_w, _ = weight_bytes(cfg, spec)
    embedding = cfg.vocab_size * cfg.dim * train_width(spec)
    return (block_w / cfg.n_layers + embedding) / prof.tp / prof.grad_div


def embedding_grad(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile) -> float:
    """The embedding's whole gradient (vocab x dim) under tensor parallelism, in the compute width.  The
    row-wise sharded embedding's backward yields a Replicate gradient, not one sharded like its weight: plain
    TP keeps it as .grad through the step, FSDP2 splits its shard off (a copy) before reducing."""
    width = 2.0 if spec.dtype == "bf16-pure" or (spec.dtype in ("bf16", "fp16") and prof.casts_params) else 4.0
    return cfg.vocab_size * cfg.dim * width


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
    largest = cfg.vocab_size * cfg.dim / prof.tp if not spec.lora_rank else cfg.ffn_dim * spec.lora_rank
    return 2 * largest * width / prof.optim_div  # sqrt(v) and sqrt(v) / bias correction, briefly both alive
