"""predict for DeepSpeed ZeRO stages 1-3: the engine's buffers, read from DeepSpeed's code and checked on
CPU runs under the counting allocator (benchmarks/results/accuracy-cpu.json).

DeepSpeed casts the whole module to the 16-bit type under bf16/fp16 (no autocast), so parameters, gradients
and activations are 16-bit and the fp32 master weights live in the optimizer.  Per rank, with T trainable
parameters, N parameters in all, w the parameter width and dp ranks:
  params     stages 1-2: every parameter (N w; the trainable ones in one flat buffer); stage 3: a 1/dp
             shard, plus its reduce bucket, held from initialisation;
  optimizer  the fp32 master partition (4 T / dp) and the optimizer's states (8 T / dp for AdamW);
  grads      stage 1 keeps every gradient until backward ends, then copies its partition out (T w + T w / dp);
             stages 2-3 reduce as backward goes and keep only the partition (T w / dp);
  step       the partition's gradients converted to fp32 (4 T / dp), and torch's AdamW on a CPU (DeepSpeed's
             CPU path without offload) takes sqrt(v) and its quotient over the flat partition (2 x 4 T / dp);
             FusedAdam on a GPU and DeepSpeedCPUAdam work in place;
  gather     stages 1-2 all-gather the updated partitions into the flat buffer; gloo gathers through a flat
             buffer of the output's size (T w), NCCL in place.
Stage 3 keeps the output projection gathered from the end of forward into backward (it is used again at
once), and parameters below its persistence threshold (10 x hidden elements) whole on every rank; its
F.linear (`memory_efficient_linear`, on by default) saves every projection's input, frozen LoRA bases too.
Under gradient accumulation stages 1-2 carry the gradients so far (all of them, or the partition) through the
next micro-batch's forward; ZeRO-Offload accumulates its partition's gradients in host buffers of their own.
"""

from __future__ import annotations

from harness.core.memory import MemoryProfile
from harness.core.spec import RunSpec
from harness.estimate.activations import Shapes, block_saved_bytes, head_bytes
from harness.estimate.model_bytes import OPTIMIZER_STATE, lora_params
from harness.estimate.phases import Prediction, largest_phase
from harness.models.zoo import ModelConfig, config_for

PERSISTENCE = 10  # stage3_param_persistence_threshold, in hidden sizes (strategies/deepspeed.py)


def reduce_bucket(cfg: ModelConfig) -> int:
    """reduce_bucket_size in elements, as strategies/deepspeed.py sets it (the Trainer's "auto": hidden^2)."""
    return cfg.dim * cfg.dim


def _persistent(cfg: ModelConfig, spec: RunSpec) -> int:
    """Parameters small enough for ZeRO-3 to keep whole on every rank: the norms (and attention biases), and
    LoRA's factors when rank x width is below the threshold."""
    limit = PERSISTENCE * cfg.dim
    embeddings = cfg.vocab_size * cfg.dim * (1 if cfg.tie_embeddings else 2)
    count = cfg.param_count() - cfg.n_layers * cfg.block_linear_params() - embeddings
    if spec.lora_rank:
        per_factor = spec.lora_rank * cfg.dim
        if per_factor <= limit:
            count += lora_params(cfg, spec)
    return count


def predict_zero(spec: RunSpec, profile: MemoryProfile, device: str = "cuda") -> Prediction:
    cfg = config_for(spec)
    held, host = _held(cfg, spec, profile)
    if device == "cuda":  # a CPU run has one pool: what offload moves to the host stays in the count
        held = {k: held[k] - host.get(k, 0.0) for k in held}
    phases = _phases(cfg, spec, profile, device)
    return Prediction(spec, *largest_phase(held, phases, device), int(sum(host.values())))


def _held(cfg: ModelConfig, spec: RunSpec, profile: MemoryProfile) -> tuple[dict[str, float], dict[str, float]]:
    """What a rank holds for the whole step, by category, and the part of it offload keeps in host memory."""
    stage, dp, w = profile.zero, spec.nproc, _width(spec)
    trainable, everything = _counts(cfg, spec)
    part = trainable / dp
    optimizer = 4.0 * part + OPTIMIZER_STATE.get(spec.optimizer, 8.0) * part  # fp32 masters and the states
    host = {"optimizer": optimizer} if "optimizer" in profile.offload else {}
    if stage == 3:
        kept = _persistent(cfg, spec)
        shards = (everything - kept) * w / dp
        params, grads, comm = shards + kept * w, part * w, reduce_bucket(cfg) * w
        if "params" in profile.offload:  # shards, the gradient partition and the fp32 gradients on the host
            host |= {"params": shards, "grads": part * w + 4.0 * part}
            grads += 4.0 * part
    else:
        params, grads, comm = everything * w, 0.0, 0.0
        if "optimizer" in profile.offload:
            # the fp32 gradient partition and the 16-bit copy-back buffer on the host; one largest-gradient
            # buffer on each side (the device's is used for gradient accumulation only)
            largest = _largest(cfg, spec) * w
            grads, comm = 4.0 * part, part * w + 2 * largest
            if spec.grad_accum > 1:  # the partition's parameters' gradients accumulated on the host
                grads += part * w
            host |= {"grads": grads, "comm": part * w + largest}
    return {"params": params, "grads": grads, "optimizer": optimizer, "comm": comm}, host


def _width(spec: RunSpec) -> float:
    return 2.0 if spec.dtype in ("bf16", "fp16") else 4.0


def _counts(cfg: ModelConfig, spec: RunSpec) -> tuple[float, float]:
    """(trainable parameters, all parameters): ZeRO partitions the trainable ones (LoRA's adapters)."""
    adapters = lora_params(cfg, spec)
    return float(adapters if spec.lora_rank else cfg.param_count()), float(cfg.param_count() + adapters)


def _largest(cfg: ModelConfig, spec: RunSpec) -> int:
    """Elements of the largest trainable parameter (under LoRA, a factor bounded by rank x the widest
    projection: at most a few hundred KB, so the bound is kept rather than the targets' exact widths)."""
    if spec.lora_rank:
        return spec.lora_rank * max(cfg.dim, cfg.ffn_dim)
    return max(cfg.vocab_size * cfg.dim, cfg.dim * cfg.ffn_dim, cfg.dim * cfg.q_dim)


def _phases(cfg: ModelConfig, spec: RunSpec, profile: MemoryProfile, device: str) -> dict[str, dict[str, float]]:
    """What each phase adds to the held state (bytes per rank, by category)."""
    stage, dp, w = profile.zero, spec.nproc, _width(spec)
    trainable, _ = _counts(cfg, spec)
    grad_part = trainable / dp * w
    shapes = Shapes.of(cfg, spec, 1, casts_params=True, every_input=stage == 3)
    blocks, head = block_saved_bytes(shapes, spec), head_bytes(shapes, spec)
    acts = blocks.total + head.forward
    output = cfg.vocab_size * cfg.dim * w if stage == 3 else 0.0  # gathered from forward's end into backward
    bucket = reduce_bucket(cfg) * w
    fp32_grads = 4.0 * trainable / dp
    filling = stage < 3 and "optimizer" not in profile.offload  # offload reduces into the held fp32 buffer
    phases = {
        "forward end": {"activations": acts + blocks.recompute, "comm": output},
        "backward start": {"activations": acts, "temporaries": head.backward, "comm": output},
        # stage 1 holds every gradient and copies its partition out; 2-3 hold the partition as it fills
        "backward end": {"grads": (trainable * w if stage == 1 else 0.0) + (grad_part if filling else 0.0),
                         "comm": bucket if stage < 3 else 0.0},
    }
    if not spec.lora_rank:  # the output projection's backward: its whole gradient beside the logits' gradient
        phases["output projection's backward"] = {"activations": blocks.total, "comm": output,
                                                  "temporaries": head.logits,
                                                  "grads": cfg.vocab_size * cfg.dim * w}
    if spec.grad_accum > 1 and filling:  # from the second micro-batch on, the gradients so far are alive:
        for name in ("forward end", "backward start"):  # stage 1 all of them, stage 2 the partition
            phases[name]["grads"] = trainable * w if stage == 1 else grad_part
    if stage < 3 and device == "cpu":  # gloo gathers the updated partitions through an output-sized buffer
        phases["all-gather"] = {"comm": trainable * w}
    if "optimizer" in profile.offload:  # the step runs on the host, in place, into buffers already held
        return phases
    temporaries = _adam_temporaries(spec, profile, device, fp32_grads)
    phases["optimizer step"] = {"grads": fp32_grads, "temporaries": temporaries}
    if stage < 3:  # the partition flattened beside its gradients, then converted to fp32
        phases["gradients flattened"] = {"grads": 2 * grad_part + (fp32_grads if w != 4.0 else 0.0)}
    return phases


def _adam_temporaries(spec: RunSpec, profile: MemoryProfile, device: str, fp32_part: float) -> float:
    """torch's AdamW (DeepSpeed's CPU optimizer without offload) over the one flat fp32 partition: sqrt(v)
    and its quotient, briefly both alive.  FusedAdam (GPU), DeepSpeedCPUAdam (offload) and SGD: in place."""
    if spec.optimizer != "adamw" or device == "cuda" or "optimizer" in profile.offload:
        return 0.0
    return 2 * fp32_part
