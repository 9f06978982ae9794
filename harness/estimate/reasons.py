"""Why each large term of an estimate is there, in one line: what the step keeps, at which width, and the flag
that changes it.  Only the terms above SHARE of the device total get a line."""

from __future__ import annotations

from collections.abc import Callable

from harness.core.memory import CUDA_CONTEXT_BYTES, MemoryProfile
from harness.core.spec import RunSpec
from harness.core.units import MIB
from harness.estimate.model_bytes import QUANT_BYTES, lora_params, train_width
from harness.estimate.phases import Prediction
from harness.models.zoo import ModelConfig, config_for

SHARE = 0.10  # a term above this share of the device total gets a line
MIXED = ("bf16", "fp16")

Why = Callable[[ModelConfig, RunSpec, MemoryProfile, str], str]


def reasons(spec: RunSpec, prediction: Prediction, profile: MemoryProfile) -> dict[str, str]:
    """category -> why it is there, for the categories above SHARE of the device total, largest first."""
    cfg, total = config_for(spec), prediction.device_bytes
    large = sorted(((v, k) for k, v in prediction.breakdown.items() if total and v > SHARE * total), reverse=True)
    return {name: WHY[name](cfg, spec, profile, prediction.phase) for _, name in large if name in WHY}


def _spread(div: int, tp: int = 1) -> str:
    parts = [f"sharded over {div} ranks"] if div > 1 else []
    parts += [f"split {tp} ways by tensor parallelism"] if tp > 1 else []
    return f", {' and '.join(parts)}" if parts else ""


def _width_words(width: float) -> str:
    return "fp32" if width == 4.0 else "16-bit"


def _params(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, phase: str) -> str:
    if prof.zero:
        width = 2.0 if spec.dtype in MIXED else 4.0
        where = (f"partitioned over {spec.nproc} ranks" if prof.zero == 3 else
                 f"whole on every rank (ZeRO-{prof.zero} partitions the optimizer state"
                 f"{' and gradients' if prof.zero == 2 else ''}, not the weights)")
        return f"{_width_words(width)} weights (DeepSpeed casts the module to --dtype {spec.dtype}), {where}"
    how, hint = _stored(spec)
    spread = _spread(prof.param_div, prof.tp)
    if not spec.lora_rank:
        return f"weights {how}{spread}{hint}"
    adapters = f", with {lora_params(cfg, spec):,} LoRA adapter parameters in fp32"
    if spec.quant == "none":
        return f"frozen base {how}{spread}{adapters}{hint}"
    return (f"frozen base quantized to {spec.quant} ({QUANT_BYTES[spec.quant]:.3g} B per weight with its scales; "
            f"embedding, norms and head {how}){spread}{adapters}")


def _stored(spec: RunSpec) -> tuple[str, str]:
    """How --dtype stores the weights, and what to change for fewer bytes."""
    if spec.dtype in MIXED:
        return "kept in fp32", (f": --dtype {spec.dtype} is mixed precision (16-bit compute over fp32 weights); "
                                "use bf16-pure for 16-bit weights")
    if spec.dtype == "fp32":
        return "in fp32, 4 B each", "; --dtype bf16-pure stores 2 B"
    return "in bf16, 2 B each (--dtype bf16-pure)", ""


def _grads(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, phase: str) -> str:
    if spec.lora_rank and prof.flat:
        return "FSDP1's flat parameters give the frozen base weights (zero) gradients as wide as the weights"
    if spec.lora_rank:
        return f"gradients of the {lora_params(cfg, spec):,} LoRA adapter parameters only, in fp32"
    if prof.zero:
        width = 2.0 if spec.dtype in MIXED else 4.0
        spread = (", every one until backward ends (ZeRO-1), then its partition" if prof.zero == 1 else
                  f", partitioned over {spec.nproc} ranks")
    else:
        width, spread = train_width(spec), _spread(prof.grad_div, prof.tp)
    text = f"one {_width_words(width)} gradient per parameter{spread}"
    if spec.grad_accum > 1:
        text += f"; kept through the {spec.grad_accum} micro-batches of a step (--grad-accum)"
    return text


def _optimizer(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, phase: str) -> str:
    width = _width_words(4.0 if prof.zero else train_width(spec))
    kept = {"adamw": f"AdamW keeps 2 {width} states", "sgd": f"SGD keeps 1 {width} momentum",
            "adamw8bit": "8-bit AdamW keeps 2 one-byte states (and block scales)",
            "adafactor": "Adafactor is counted as 8 B"}[spec.optimizer]
    if spec.lora_rank:
        what = f"the {lora_params(cfg, spec):,} adapter parameters"
    else:
        what = f"{cfg.param_count():,} of them"
    if prof.zero:
        return (f"{kept} per trainable parameter ({what}), and DeepSpeed's fp32 master weights, partitioned over "
                f"{spec.nproc} ranks")
    return f"{kept} per trainable parameter ({what}){_spread(prof.optim_div, prof.tp)}"


def _tokens(spec: RunSpec, prof: MemoryProfile) -> str:
    """A rank's tokens: batch x seq, a 1/cp share of each sequence under context parallelism."""
    share = f" (1/{prof.cp} of each sequence)" if prof.cp > 1 else ""
    return f"{spec.batch_size} x {spec.seq_len // prof.cp}{share}"


def _activations(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, phase: str) -> str:
    ckpt = {"off": "checkpointing off; --activation-checkpointing full keeps only each block's input",
            "full": "checkpointing full: each block keeps its input, one block recomputed at a time",
            "selective": f"checkpointing 1 block in {spec.ckpt_every}",
            "op": "checkpointing per op: each block keeps its input, matmul and attention outputs"
            }[spec.activation_checkpointing]
    return (f"{cfg.n_layers} blocks x {_tokens(spec, prof)} tokens of tensors saved for backward "
            f"({ckpt}), and the {cfg.vocab_size:,}-wide logits")


def _temporaries(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, phase: str) -> str:
    if phase == "optimizer step" and spec.optimizer == "adamw":
        return ("AdamW's update at the optimizer step: a temporary as large as its states' share (sqrt of the "
                "second moments)")
    if phase == "optimizer step":
        return "the optimizer step's copy of the whole embedding gradient (SGD under tensor parallelism)"
    if phase == "backward start":
        return (f"the loss's gradients: log-softmax and logits, {_tokens(spec, prof)} tokens x "
                f"{cfg.vocab_size:,}")
    return f"short-lived buffers at the {phase}"


def _comm(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, phase: str) -> str:
    if prof.zero:
        what = "ZeRO's reduce bucket and gather buffers"
    elif prof.gathered != "none":
        what = "the unit in use gathered whole (and the next one prefetched), and the reduce-scatter buffers"
    elif prof.grad_buckets:
        what = "DDP's gradient buckets, as large as the gradients"
    else:
        what = "communication buffers"
    return f"{spec.strategy}: {what}, at the {phase}"


def _context(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, phase: str) -> str:
    workspace = (" and async TP's symmetric-memory workspace (allocated by the CUDA driver)"
                 if prof.symm_mem and prof.tp > 1 else "")
    return (f"the CUDA context and kernels (about {CUDA_CONTEXT_BYTES // MIB} MiB; 0.5-1.3 GB by driver and "
            f"build){workspace}, outside the allocator's peak")


WHY: dict[str, Why] = {"params": _params, "grads": _grads, "optimizer": _optimizer, "activations": _activations,
                       "temporaries": _temporaries, "comm": _comm, "context": _context}
