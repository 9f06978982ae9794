"""RunSpec: what to run, validated before anything is launched."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
_FLAGS = {"timeout_s": "--timeout"}  # fields whose CLI flag is not the field name


class SpecError(ValueError):
    """Bad input: names the field (as its CLI flag) and, where there is a list, the valid values."""

    def __init__(self, field: str, message: str, valid: str | None = None) -> None:
        self.field = field
        flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
        text = f"{flag}: {message}" + (f"; valid: {valid}" if valid else "")
        super().__init__(text)


class Unsupported(Exception):
    """A valid spec this machine or strategy cannot run (recorded with status `unsupported`)."""


@dataclass(frozen=True)
class RunSpec:
    model: str = "tiny"
    strategy: str = "single"
    nproc: int = 1  # ranks in all (the world size); nproc / nnodes on each host
    nnodes: int = 1  # hosts joined through torchrun's c10d rendezvous (launch.Rendezvous)
    steps: int = 8  # timed steps
    warmup: int = 2  # untimed steps before the memory steps (optimizer state exists after the first)
    memory_steps: int = 2  # untimed steps under the memory probe; the peak is the largest over them
    batch_size: int = 4  # per data-parallel rank (micro-batch); global batch = batch_size x dp degree
    seq_len: int = 128
    device: str = "auto"
    seed: int = 0
    lr: float = 1e-3
    tp: int = 0  # tensor-parallel degree; 0 = the strategy's default
    dp_replicate: int = 0  # replica groups for hybrid sharding; 0 = the strategy's default
    timeout_s: float = 600.0
    # memory knobs (valid values in harness/knobs.py)
    dtype: str = "fp32"  # fp32, bf16 / fp16 (mixed, fp32 masters), bf16-pure
    activation_checkpointing: str = "off"  # off, full, selective (every ckpt_every-th block)
    ckpt_every: int = 2
    lora_rank: int = 0  # 0: full fine-tuning
    lora_alpha: int = 16
    lora_targets: str = "q,v"
    quant: str = "none"  # none, int8, nf4: frozen base weights (needs lora_rank > 0)
    optimizer: str = "adamw"  # adamw, adamw8bit, sgd, adafactor
    grad_accum: int = 1  # micro-batches per optimizer step
    model_config: str = ""  # a custom shape (--model-config / --set) as ModelConfig JSON; "" = the zoo's `model`

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_(self, **changes: Any) -> RunSpec:
        return replace(self, **changes)

    def validate(self, measure: bool = True) -> RunSpec:
        """Check every field; return the spec with `device` resolved. Raises SpecError or Unsupported.
        `measure=False` (estimate, simulate): any zoo shape, and `device` names the target, not this host."""
        from harness.zoo import ZOO
        from strategies import get_strategy, strategy_names

        runnable = ", ".join(n for n, c in ZOO.items() if c.measurable or not measure)
        if self.model_config:
            from harness.custom_model import checked, from_json

            if checked(from_json(self.model_config)).name != self.model:
                raise SpecError("model", f"{self.model!r} is not the name of the custom model config")
        elif self.model not in ZOO:
            raise SpecError("model", f"unknown model {self.model!r}", runnable)
        elif measure and not ZOO[self.model].measurable:
            raise SpecError("model", f"{self.model!r} is for predict/simulate only", runnable)
        names = strategy_names()
        if self.strategy not in names:
            raise SpecError("strategy", f"unknown strategy {self.strategy!r}", ", ".join(names))
        _positive(self, "nproc", "nnodes", "steps", "memory_steps", "batch_size", "seq_len", "timeout_s")
        _non_negative(self, "warmup", "seed", "tp", "dp_replicate")
        if self.warmup < 1:
            raise SpecError("warmup", "must be >= 1 so optimizer state exists before memory is measured")
        if not self.lr > 0:
            raise SpecError("lr", f"must be > 0, got {self.lr}")
        from harness import knobs

        knobs.validate(self)
        if self.nproc % self.nnodes:
            raise SpecError("nnodes", f"{self.nnodes} hosts cannot split {self.nproc} ranks evenly",
                            f"a divisor of --nproc {self.nproc}")
        if measure:
            spec = replace(self, device=_resolve_device(self.device, self.nproc // self.nnodes))
        elif self.device not in DEVICES:
            raise SpecError("device", f"unknown device {self.device!r}", ", ".join(DEVICES))
        else:
            spec = replace(self, device="cuda" if self.device == "auto" else self.device)
        strategy = get_strategy(spec.strategy)
        strategy.check(spec)
        strategy.check_knobs(spec)
        return spec


def _positive(spec: RunSpec, *names: str) -> None:
    for name in names:
        value = getattr(spec, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 1:
            raise SpecError(name, f"must be >= 1, got {value!r}")


def _non_negative(spec: RunSpec, *names: str) -> None:
    for name in names:
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SpecError(name, f"must be an integer >= 0, got {value!r}")


def _resolve_device(device: str, nproc: int) -> str:
    """`nproc`: the ranks on this host."""
    import torch

    if device not in DEVICES:
        raise SpecError("device", f"unknown device {device!r}", ", ".join(DEVICES))
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":  # one GPU per rank, else the CPU (the record says which)
        return "cuda" if have >= nproc else "cpu"
    if device == "cuda":
        if have == 0:
            raise SpecError("device", "cuda requested but this machine has no CUDA device", "auto, cpu")
        if nproc > have:
            raise SpecError("nproc", f"{nproc} ranks on this host need {nproc} GPUs, it has {have}",
                            f"1..{have}")
    return device
