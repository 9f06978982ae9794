"""Validation of a RunSpec before anything is launched: every field, then the strategy's own checks."""

from __future__ import annotations

from dataclasses import replace

from harness.core import knobs
from harness.core.errors import SpecError
from harness.core.spec import DEVICES, RunSpec
from harness.models.hf_config import checked
from harness.models.zoo import ZOO, ModelConfig
from strategies import get_strategy, strategy_names


def validate(spec: RunSpec, measure: bool = True) -> RunSpec:
    """Check every field; return the spec with `device` resolved. Raises SpecError or Unsupported.
    `measure=False` (estimate, simulate): any zoo shape, and `device` names the target, not this host."""
    runnable = ", ".join(n for n, c in ZOO.items() if c.measurable or not measure)
    if spec.model_config:
        if checked(ModelConfig.from_json(spec.model_config)).name != spec.model:
            raise SpecError("model", f"{spec.model!r} is not the name of the custom model config")
    elif spec.model not in ZOO:
        raise SpecError("model", f"unknown model {spec.model!r}", runnable)
    elif measure and not ZOO[spec.model].measurable:
        raise SpecError("model", f"{spec.model!r} is for predict/simulate only", runnable)
    names = strategy_names()
    if spec.strategy not in names:
        raise SpecError("strategy", f"unknown strategy {spec.strategy!r}", ", ".join(names))
    _positive(spec, "nproc", "nnodes", "steps", "memory_steps", "batch_size", "seq_len", "timeout_s")
    _non_negative(spec, "warmup", "seed", "tp", "dp_replicate")
    if spec.warmup < 1:
        raise SpecError("warmup", "must be >= 1 so optimizer state exists before memory is measured")
    if not spec.lr > 0:
        raise SpecError("lr", f"must be > 0, got {spec.lr}")
    knobs.validate(spec)
    if spec.nproc % spec.nnodes:
        raise SpecError("nnodes", f"{spec.nnodes} hosts cannot split {spec.nproc} ranks evenly",
                        f"a divisor of --nproc {spec.nproc}")
    if measure:
        spec = replace(spec, device=_resolve_device(spec.device, spec.nproc // spec.nnodes))
    elif spec.device not in DEVICES:
        raise SpecError("device", f"unknown device {spec.device!r}", ", ".join(DEVICES))
    else:
        spec = replace(spec, device="cuda" if spec.device == "auto" else spec.device)
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
