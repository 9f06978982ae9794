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
    keeps_root: bool = False  # FSDP over a one-rank mesh: the root's gathered copy outlives the optimizer step
    zero: int = 0  # DeepSpeed ZeRO stage: its buffers are modelled in harness/predict_zero.py


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


def _state(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile) -> dict[str, float]:
    """Persistent model state per rank: params, grads (when all exist), optimizer (with a master copy)."""
    block_w, rest_w = weight_bytes(cfg, spec)
    adapters = lora_params(cfg, spec)
    params = (block_w + rest_w) / prof.tp / prof.param_div + adapters * 4.0 / prof.param_div
    trainable = adapters if spec.lora_rank else cfg.param_count()
    grad_width = 2.0 if spec.dtype == "bf16-pure" else 4.0
    grads = trainable * grad_width / prof.tp / prof.grad_div
    optim = trainable * OPTIMIZER_STATE.get(spec.optimizer, 8.0) / prof.tp / prof.optim_div
    return {"params": params, "grads": grads, "optimizer": optim}


def predict(spec: RunSpec, profile: MemoryProfile, device: str = "cuda") -> Prediction:
    """The per-rank peak of `spec` under `profile`; `device` decides the context (and the offload pool)."""
    if profile.zero:
        from harness.predict_zero import predict_zero

        return predict_zero(spec, profile, device)
    cfg = config_for(spec)
    state = _state(cfg, spec, profile)
    shapes = Shapes.of(cfg, spec, profile.tp, casts_params=profile.casts_params)
    blocks = block_saved_bytes(shapes, spec)  # every block's saved tensors, checkpointing applied
    head = head_bytes(shapes, spec)
    host = sum(v for k, v in state.items() if k in profile.offload)
    if device == "cuda":  # on a CPU run host and device memory are one pool: offload moves nothing out
        state = {k: (0.0 if k in profile.offload else v) for k, v in state.items()}
    comm = _Comm(cfg, spec, profile, state)
    acts = blocks.total + head.forward
    phases = {
        "forward end": {"activations": acts, "temporaries": blocks.recompute, "comm": comm.compute},
        "backward start": {"activations": acts, "temporaries": head.backward, "comm": comm.backward_start},
        "backward end": {"grads": state["grads"] - comm.root_grad_shard, "temporaries": blocks.recompute,
                         "comm": comm.last_reduce},
        "optimizer step": {"grads": state["grads"], "comm": comm.idle,
                           "temporaries": _optimizer_temporaries(cfg, spec, profile, device)},
    }
    if profile.gathered == "unit":
        # the last block's backward: its gathered parameters and the next block's prefetch, every block's
        # activations, the logits' gradient and the output projection's whole gradient (reduced at the end)
        output_grad = 0.0 if spec.lora_rank else cfg.vocab_size * cfg.dim * 4.0 / profile.tp
        phases["last block's backward"] = {"activations": blocks.total,
                                           "comm": comm.compute if profile.param_div > 1 else comm.block_backward,
                                           "temporaries": head.backward / 2 + output_grad}
    if comm.regather:  # the log-softmax's output and gradient are gone, the logits' gradient is not
        logits = head.backward / 2
        phases["root re-gathered"] = {"activations": acts - logits, "temporaries": logits,
                                      "comm": comm.regather}
    if spec.grad_accum > 1:  # from the second micro-batch on, the gradients accumulated so far are alive; FSDP
        # skips its reduce-scatter until the last micro-batch, so it holds them unsharded
        held = state["grads"] * (profile.grad_div if profile.gathered != "none" else 1)
        for name in ("forward end", "backward start", "root re-gathered", "last block's backward"):
            if name in phases:
                phases[name]["grads"] = held
    held = {"params": state["params"], "optimizer": state["optimizer"]}
    return Prediction(spec, *largest_phase(held, phases, device), int(host))


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


class _Comm:
    """Buffers communication adds, by phase.  DDP: gradient buckets as large as the gradients, for the whole
    run.  FSDP/ZeRO-3: the root unit (embeddings, output, final norm) stays gathered from forward to the end
    of backward, one block is gathered at a time while the next is prefetched ("unit") or every block stays
    gathered until its backward ("all"); the last reduce-scatter (the root's) holds the root's whole
    gradients and their flattened copy while its shard of the gradients does not exist yet.  A one-rank
    shard group (HSDP's) copies instead of gathering: the root's copy, and in backward a block's beside it."""

    def __init__(self, cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, state: dict[str, float]) -> None:
        self.compute = self.last_reduce = self.idle = self.root_grad_shard = self.regather = 0.0
        self.backward_start = self.block_backward = 0.0
        if prof.grad_buckets:
            self.compute = self.last_reduce = self.idle = state["grads"] * prof.grad_div
            return
        if prof.gathered == "none":
            return
        block_w, rest_w = weight_bytes(cfg, spec)
        gathered = 2.0 if spec.dtype in ("bf16", "fp16", "bf16-pure") and prof.casts_params else 4.0
        root = (rest_w / 4.0 * gathered if spec.dtype != "bf16-pure" else rest_w) / prof.tp
        block = block_w / cfg.n_layers / prof.tp / 4.0 * gathered
        if prof.param_div == 1:  # a one-rank shard group copies shards into parameters, no all-gather buffer:
            self.compute = root  # the root's copy is held while forward and backward compute
            self.block_backward = root + block  # and, in backward, the block's copy beside it
            self.idle = root if prof.keeps_root else 0.0
            root = 0.0
        else:
            # "unit": the block in use, and the next one's all-gather output with its copy into parameters
            self.compute = root + (3 * block if prof.gathered == "unit" else cfg.n_layers * block)
            if prof.gathered == "unit":  # FSDP2 reshards the root after forward and gathers it again for
                # backward: the gathered root, its shard cast to 16 bits first (mixed precision), and on
                # CPU the flat output-sized buffer gloo gathers into
                cast = root / prof.param_div if spec.dtype in ("bf16", "fp16") and prof.casts_params else 0.0
                self.regather = root + cast + (root if spec.device == "cpu" else 0.0)
        # between the head's forward and backward every block is resharded ("unit"): only the root is gathered;
        # a one-rank shard group (HSDP's) frees the root's copy after forward and copies it again for backward
        self.backward_start = self.compute if prof.gathered != "unit" or prof.keeps_root else root
        if prof.param_div == 1 and prof.gathered == "unit" and not prof.keeps_root:
            self.regather, self.backward_start = self.compute, 0.0
        if "params" in prof.offload and spec.device == "cuda":  # shards copied to the GPU before gathering
            self.compute += (root + 2 * block) / prof.param_div
        if not spec.lora_rank:  # frozen root weights have no gradients to reduce
            root_grads = rest_w / 4.0 * 4.0 / prof.tp
            self.root_grad_shard = root_grads / prof.grad_div
            self.last_reduce = root + 2 * root_grads


def _optimizer_temporaries(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, device: str) -> float:
    """torch's AdamW runs foreach on CUDA: one full-size temporary (sqrt of the second moments, divided in
    place); on CPU it runs per tensor, and the largest parameter's sqrt and its quotient set the peak."""
    trainable = lora_params(cfg, spec) if spec.lora_rank else cfg.param_count()
    if spec.optimizer != "adamw" or "optimizer" in prof.offload:
        return 0.0
    if device == "cuda" and not (prof.tp > 1 and prof.gathered == "none"):  # plain TP runs per tensor
        return trainable * 4.0 / prof.tp / prof.optim_div
    largest = cfg.vocab_size * cfg.dim / prof.tp if not spec.lora_rank else cfg.ffn_dim * spec.lora_rank
    return 2 * largest * 4.0 / prof.optim_div  # sqrt(v) and sqrt(v) / bias correction, briefly both alive
