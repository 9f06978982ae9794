"""Validation of a RunSpec before anything is launched: every field, then the strategy's own checks."""

from __future__ import annotations

import os
from dataclasses import replace

from harness.core import knobs
from harness.core.errors import SpecError, Unsupported
from harness.core.limits import check_spec_limits
from harness.core.spec import DEVICES, RunSpec
from harness.models.hf_config import checked
from harness.models.zoo import ZOO, ModelConfig
from harness.run.workload_checks import check_generation, check_workload
from strategies import get_strategy, strategy_names
from strategies.cp_checks import refuse_cp
from strategies.pipeline_checks import refuse_pipeline_fields
from strategies.tp_checks import refuse_loss_parallel

RANKS_PER_CORE = 8  # a measured CPU run: more ranks per core than this measures contention, not the strategy


def validate(spec: RunSpec, measure: bool = True, planned: bool = False) -> RunSpec:
    """Check every field; return the spec with `device` resolved. Raises SpecError or Unsupported.
    `measure=False` (estimate, simulate): any zoo shape and world size, and `device` names the target, not
    this host.  `planned` (a dry run): `--device cuda` is checked for a host with the GPUs it needs, not
    against this host's."""
    cfg = _model(spec, measure)
    names = strategy_names()
    if spec.strategy not in names:
        raise SpecError("strategy", f"unknown strategy {spec.strategy!r}", ", ".join(names))
    if isinstance(spec.warmup, int) and spec.warmup < 1:
        raise SpecError("warmup", "must be >= 1 so optimizer state exists before memory is measured")
    check_spec_limits(spec)
    knobs.validate(spec)
    check_workload(spec)
    check_lora_rank(spec, cfg)
    if spec.nproc % spec.nnodes:
        raise SpecError("nnodes", f"{spec.nnodes} hosts cannot split {spec.nproc} ranks evenly",
                        f"a divisor of --nproc {spec.nproc}")
    if measure:
        spec = replace(spec, device=_resolve_device(spec.device, spec.nproc // spec.nnodes, planned))
    elif spec.device not in DEVICES:
        raise SpecError("device", f"unknown device {spec.device!r}", ", ".join(DEVICES))
    else:
        spec = replace(spec, device="cuda" if spec.device == "auto" else spec.device)
    strategy = get_strategy(spec.strategy)
    if not strategy.pipelines:
        refuse_pipeline_fields(spec, spec.strategy)
    refuse_loss_parallel(spec, strategy)
    refuse_cp(spec, strategy)
    strategy.check(spec)
    strategy.check_knobs(spec)
    if measure and spec.device in strategy.device_why_not:  # estimate models it for any target
        raise Unsupported(f"{spec.strategy} on {spec.device}: {strategy.device_why_not[spec.device]}")
    check_generation(spec, strategy, measure)
    if measure:  # estimate needs no package; simulate checks those it runs (check_simulable)
        knobs.check_packages(spec)
    return spec


def _model(spec: RunSpec, measure: bool) -> ModelConfig:
    """The shape the spec trains, checked: a custom config carried in the spec, or a zoo name."""
    runnable = ", ".join(n for n, c in ZOO.items() if c.measurable or not measure)
    if spec.model_config:
        try:
            cfg = checked(ModelConfig.from_json(spec.model_config))
        except (ValueError, TypeError) as why:  # a spec written by hand, not by the flags
            raise SpecError("model_config", f"not a model config: {type(why).__name__}") from None
        if cfg.name != spec.model:
            raise SpecError("model", f"{spec.model!r} is not the name of the custom model config")
        return cfg
    if spec.model not in ZOO:
        raise SpecError("model", f"unknown model {spec.model!r}", runnable)
    if measure and not ZOO[spec.model].measurable:
        raise SpecError("model", f"{spec.model!r} is for predict/simulate only", runnable)
    return ZOO[spec.model]


def lora_widths(cfg: ModelConfig) -> dict[str, int]:
    """Each adaptable projection's rank limit: the smaller of its input and output widths."""
    kv, q = cfg.n_kv_heads * cfg.head_dim, min(cfg.dim, cfg.q_dim)
    return {"wq": q, "wk": min(cfg.dim, kv), "wv": min(cfg.dim, kv), "wo": q,
            "w1": min(cfg.dim, cfg.ffn_dim), "w3": min(cfg.dim, cfg.ffn_dim), "w2": min(cfg.dim, cfg.ffn_dim)}


def check_lora_rank(spec: RunSpec, cfg: ModelConfig) -> None:
    """A LoRA rank above the smallest adapted projection's width adds no capacity: refused."""
    if not spec.lora_rank:
        return
    widths = lora_widths(cfg)
    width = min(widths[m] for m in knobs.lora_modules(spec.lora_targets))
    if spec.lora_rank > width:
        raise SpecError("lora_rank", f"{spec.lora_rank} is above the width {width} of the smallest projection "
                        f"--lora-targets {spec.lora_targets} adapts in {cfg.name}", f"0..{width}")


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call on this platform
        return os.cpu_count() or 1


def _resolve_device(device: str, nproc: int, planned: bool = False) -> str:
    """`nproc`: the ranks on this host; `planned`: a cuda device is assumed to have them all."""
    import torch

    if device not in DEVICES:
        raise SpecError("device", f"unknown device {device!r}", ", ".join(DEVICES))
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if planned and device == "cuda":
        have = max(have, nproc)
    if device == "auto":  # one GPU per rank, else the CPU (the record says which)
        device = "cuda" if have >= nproc else "cpu"
    if device == "cuda":
        if have == 0:
            raise SpecError("device", "cuda requested but this machine has no CUDA device", "auto, cpu")
        if nproc > have:
            raise SpecError("nproc", f"{nproc} ranks on this host need {nproc} GPUs, it has {have}",
                            f"1..{have}")
    most = RANKS_PER_CORE * cpu_cores()
    if device == "cpu" and nproc > most:
        raise SpecError("nproc", f"{nproc} ranks on this host's {cpu_cores()} CPU cores: a measured CPU run "
                        f"takes at most {RANKS_PER_CORE} ranks per core", f"1..{most}")
    return device
