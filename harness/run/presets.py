"""Sweep presets: named matrices of RunSpecs (models x strategies x knob variants) with the same global batch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from harness.core.errors import SpecError
from harness.core.limits import LIMITS, check_int, check_spec_limits
from harness.core.spec import RunSpec
from harness.models.zoo import ZOO
from harness.run.generation_variants import KV_CACHE_GRID, OFFLOAD_MODES
from harness.run.recipe_variants import RECIPES
from strategies import get_strategy, strategy_names

MODEL_PARALLEL = ("ddp", "fsdp_full_shard", "tp", "tp_sp", "pp_gpipe", "pp_1f1b", "pp_interleaved", "fsdp_tp_pp")
CORE = ("single", "ddp", "fsdp_full_shard", "fsdp_shard_grad_op", "fsdp_hybrid_shard", "fsdp_offload", "tp",
        "fsdp_tp")


def matrix(strategies: Iterable[str], models: Iterable[str], nproc: int, global_batch: int,
           base: RunSpec) -> list[RunSpec]:
    """One spec per (model, strategy) with the same global batch: per-rank micro-batch = global / (dp degree x
    grad_accum) (`single` runs on one rank), so every strategy trains on the same data and losses compare."""
    specs = []
    for model in models:
        for name in strategies:
            ranks = 1 if name == "single" else nproc
            hosts = 1 if name == "single" else base.nnodes
            spec = base.with_(model=model, strategy=name, nproc=ranks, nnodes=hosts)
            try:
                dp = get_strategy(name).layout(spec).dp
            except KeyError:
                dp = ranks  # unknown name: validation reports it
            per = dp * base.grad_accum
            if global_batch % per:
                raise SpecError("global_batch", f"{global_batch} is not divisible by {name}'s {dp} data-parallel "
                                f"ranks x {base.grad_accum} accumulation steps", f"a multiple of {per}")
            most = LIMITS["batch_size"][1]
            if global_batch // per > most:
                raise SpecError("global_batch", f"{global_batch} gives {name} {global_batch // per} sequences per "
                                f"rank and micro-batch, above {most}", f"a multiple of {per} up to {most * per}")
            specs.append(spec.with_(batch_size=global_batch // per))
    return specs


@dataclass(frozen=True)
class Preset:
    strategies: tuple[str, ...]
    models: tuple[str, ...]
    nproc: int  # ranks for every strategy but `single`
    global_batch: int
    seq_len: int
    warmup: int
    steps: int
    # spec fields each row changes (knobs, batch_size), crossed with models x strategies; in this order
    variants: tuple[dict[str, Any], ...] = ({},)
    cuda_models: tuple[str, ...] | None = None  # the models when the runs go to CUDA (default: `models`)
    table: str = "records"  # how the sweep prints: records, levers (deltas row to row) or lora-ranks (pivot)
    # fields replaced when the runs go to a CPU without fast 16-bit GEMMs (unless given as flags)
    slow_cpu_fields: dict[str, Any] | None = None
    # more (strategies, models) blocks after the main one, on the same settings (dropped by --models and
    # --strategies); the strategies `ALL` stand for every registered strategy, plugins included
    also: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()


ALL: tuple[str, ...] = ()


_LEVERS: tuple[dict[str, Any], ...] = (
    {"dtype": "fp32"},
    {"dtype": "bf16"},
    {"dtype": "bf16", "compile": "blocks"},  # against bf16 eager: what Inductor's fused blocks save and cost
    {"dtype": "bf16", "activation_checkpointing": "full"},
    {"dtype": "bf16", "activation_checkpointing": "full", "lora_rank": 8},
    {"dtype": "bf16", "activation_checkpointing": "full", "lora_rank": 8, "optimizer": "adamw8bit"},
    {"dtype": "bf16", "activation_checkpointing": "full", "lora_rank": 8, "optimizer": "adamw8bit", "quant": "nf4"},
)


_ACCURACY = tuple({"dtype": d, "activation_checkpointing": c, "lora_rank": r}
                  for d in ("fp32", "bf16") for c in ("off", "full") for r in (0, 8))


_LORA_RANKS = tuple({"lora_rank": r, "batch_size": b, "dtype": "bf16", "quant": "nf4", "lora_targets": "all-linear"}
                    for b in (2, 4, 8, 12) for r in (2, 4, 8))

# generation's load bytes by dtype and quantization: the rule of thumb (4, 2, 1, 0.5 bytes per parameter) measured,
# bitsandbytes' and torchao's quantizers side by side (int4-torchao: CUDA only, unsupported on a CPU with the reason)
_INFERENCE = tuple({"workload": "generate", "prompt_len": 16, "new_tokens": 4, "dtype": d, "quant": q}
                   for d, q in (("fp32", "none"), ("bf16", "none"), ("fp16", "none"), ("fp32", "int8"),
                                ("fp32", "nf4"), ("fp32", "int8-torchao"), ("fp32", "nf4-torchao"),
                                ("bf16", "int4-torchao")))


PRESETS: dict[str, Preset] = {
    # every core strategy on `tiny`, 2 ranks: a quick end-to-end check on a laptop CPU
    "smoke": Preset(CORE, ("tiny",), nproc=2, global_batch=4, seq_len=64, warmup=1, steps=4),
    # sharding versus replication where model state dominates memory
    "memory": Preset(("single", "ddp", "fsdp_full_shard", "fsdp_shard_grad_op"), ("125m",), nproc=2,
                     global_batch=2, seq_len=128, warmup=1, steps=3),
    # the nightly GPU matrix: 1b and 8b (an OOM is a result), 8 ranks unless --nproc says otherwise
    "gpu": Preset(CORE, ("1b", "8b"), nproc=8, global_batch=8, seq_len=2048, warmup=2, steps=10),
    # every registered strategy on `tiny` (ok, or unsupported with the reason), then the sharding families
    # side by side on `125m`, where model state dominates: DDP, FSDP2, FSDP1, ZeRO 1/2/3
    "strategies": Preset(ALL, ("tiny",), nproc=2, global_batch=4, seq_len=64, warmup=1, steps=3,
                         also=((("ddp", "fsdp_full_shard", "fsdp1_full_shard", "zero1", "zero2", "zero3"),
                                ("125m",)),)),
    # one model, the memory levers added one at a time: what each saves and what it costs per step
    "levers": Preset(("single",), ("125m",), nproc=1, global_batch=4, seq_len=256, warmup=1, steps=2,
                     variants=_LEVERS, cuda_models=("8b",), table="levers", slow_cpu_fields={"dtype": "fp32"}),
    # the recipes users run, one step at a time under FSDP2: full loss, chunked loss, compiled blocks, op-level
    # checkpointing, QLoRA (harness/run/recipe_variants.py); each row's peak and time against the row before.
    # Long sequences, so activations and logits outweigh the model state as in an 8b fine-tune (125m at 2 x 256
    # peaks in the optimizer step, where no recipe step changes a byte)
    "recipes": Preset(("fsdp_full_shard",), ("tiny",), nproc=2, global_batch=4, seq_len=1024, warmup=1, steps=2,
                      variants=RECIPES, cuda_models=("8b",), table="levers", slow_cpu_fields={"dtype": "fp32"}),
    # QLoRA (NF4 base, bf16) peak memory by LoRA rank and batch size, as in the source experiment
    "lora-ranks": Preset(("single",), ("125m",), nproc=1, global_batch=1, seq_len=256, warmup=1, steps=1,
                         variants=_LORA_RANKS, cuda_models=("8b",), table="lora-ranks",
                         slow_cpu_fields={"dtype": "fp32"}),
    # measured beside predicted and simulated peaks: every core strategy x {fp32, bf16 mixed} x {checkpointing
    # off, full} x {full fine-tuning, LoRA}, on tiny and 125m (run with --predict --simulate)
    "accuracy": Preset(CORE, ("tiny", "125m"), nproc=2, global_batch=4, seq_len=64, warmup=1, steps=1,
                       variants=_ACCURACY),
    # generation on 1b (8b on CUDA): load, prefill and decode by dtype and quantization, one sequence
    "inference": Preset(("single",), ("1b",), nproc=1, global_batch=1, seq_len=20, warmup=1, steps=1,
                        variants=_INFERENCE, cuda_models=("8b",), table="inference"),
    # generation's KV cache by batch (down) and context (across) on tiny, fp32: where it overtakes the weights
    "kv-cache": Preset(("single",), ("tiny",), nproc=1, global_batch=1, seq_len=1024, warmup=1, steps=1,
                       variants=KV_CACHE_GRID, table="kv-cache"),
    # generation on 125m with the weights offloaded nowhere, to host memory and to disk, each against none
    "offload": Preset(("single",), ("125m",), nproc=1, global_batch=1, seq_len=80, warmup=1, steps=1,
                      variants=OFFLOAD_MODES, table="offload"),
    # data, sharded, tensor, sequence and pipeline parallelism side by side on 4 ranks and one global batch:
    # each rank's peak (pipeline stages differ), step time and, for the pipelines, the bubble beside its theory
    "model-parallel": Preset(MODEL_PARALLEL, ("tiny",), nproc=4, global_batch=8, seq_len=64, warmup=1, steps=3),
    # GPipe's bubble against micro-batches (m = p, 2p, 4p) beside (p - 1) / (m + p - 1): 2 stages, so that on a
    # 2-core machine each rank has a core and waits for the pipeline, not for a CPU
    "pipeline-bubble": Preset(("pp_gpipe",), ("tiny",), nproc=2, global_batch=16, seq_len=256, warmup=2, steps=6,
                              variants=tuple({"pp_microbatches": m} for m in (2, 4, 8))),
}


def plan(name: str, base: RunSpec, exact: bool = False, **overrides: Any) -> list[RunSpec]:
    """The preset's specs; any non-None override (strategies, models, nproc, global_batch, seq_len, warmup,
    steps) replaces the preset's value.  `exact`: no slow-CPU substitutions (see plan_note)."""
    if name not in PRESETS:
        raise SpecError("preset", f"unknown preset {name!r}", ", ".join(PRESETS))
    check_spec_limits(base)  # before any arithmetic on the values (a global batch over 0 ranks)
    for field in ("nproc", "global_batch", "seq_len", "warmup", "steps"):
        if overrides.get(field) is not None:
            check_int(field, overrides[field])
    _check_names(overrides.get("models"), overrides.get("strategies"), base)
    p = replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    models = p.models
    if p.cuda_models and overrides.get("models") is None and _runs_on_cuda(base):
        models = p.cuda_models
    blocks = [(p.strategies, models)]
    if overrides.get("models") is None and overrides.get("strategies") is None:
        blocks += list(p.also)
    specs: list[RunSpec] = []
    for strategies, block_models in blocks:
        block = replace(p, strategies=strategies or tuple(strategy_names()), models=block_models)
        specs += [spec for spec in _plan_block(block, base, exact) if spec not in specs]
    return specs


def _check_names(models: tuple[str, ...] | None, strategies: tuple[str, ...] | None, base: RunSpec) -> None:
    """--models (zoo models a run can measure; a custom model's name is its own) and --strategies."""
    runnable = [n for n, c in ZOO.items() if c.measurable]
    bad = [m for m in models or () if m not in runnable and not base.model_config]
    if bad:
        raise SpecError("models", f"no measurable zoo model {', '.join(map(repr, bad))}", ", ".join(runnable))
    names = strategy_names()
    bad = [s for s in strategies or () if s not in names]
    if bad:
        raise SpecError("strategies", f"unknown strategy {', '.join(map(repr, bad))}", ", ".join(names))


SWEEP_FLAGS = {"model": "models", "strategy": "strategies"}  # a spec's field -> the sweep flag that sets it


def sweep_error(bad: SpecError) -> SpecError:
    """A spec's bad input as the sweep's flags name it (--strategies for a strategy that refuses the spec)."""
    if bad.field not in SWEEP_FLAGS:
        return bad
    return SpecError(SWEEP_FLAGS[bad.field], str(bad).split(": ", 1)[1])


def _plan_block(p: Preset, base: RunSpec, exact: bool) -> list[RunSpec]:
    models = p.models
    base = base.with_(seq_len=p.seq_len, warmup=p.warmup, steps=p.steps)
    # A flag given on the command line replaces the preset's value wherever a variant sets that field; a
    # variant that leaves a field others set gets the field's default (levers: no LoRA before the LoRA row).
    defaults = RunSpec()
    given = {k: v for k, v in asdict(base).items() if v != getattr(defaults, k)}
    varied = set().union(*p.variants)
    slow = {} if exact else _slow_cpu_fields(p, base)
    specs: list[RunSpec] = []
    for variant in p.variants:  # variants outermost, so a table reads in the preset's order
        fields = {k: getattr(defaults, k) for k in varied}
        fields.update({k: given.get(k, slow.get(k, v)) for k, v in variant.items()})
        rows = matrix(p.strategies, models, p.nproc, p.global_batch, base.with_(**fields))
        if "batch_size" in variant:  # the variant fixes the per-rank batch
            rows = [spec.with_(batch_size=fields["batch_size"]) for spec in rows]
        specs += [spec for spec in rows if spec not in specs]  # a replaced field can make two rows one
    return specs


def _slow_cpu_fields(p: Preset, base: RunSpec) -> dict[str, Any]:
    from harness.core.host import fast_16bit_cpu

    if not p.slow_cpu_fields or _runs_on_cuda(base) or fast_16bit_cpu():
        return {}
    return p.slow_cpu_fields


def plan_note(name: str, base: RunSpec) -> str | None:
    """What the preset changes on this machine, for the user to read before the sweep starts."""
    slow = {k: v for k, v in _slow_cpu_fields(PRESETS[name], base).items() if getattr(base, k) == getattr(
        RunSpec(), k)}
    if not slow:
        return None
    fields = ", ".join(f"{k} {v}" for k, v in slow.items())
    return (f"note: {name} on this CPU runs with {fields} in every row: it has no fast 16-bit matrix multiply "
            "(no AVX-512 BF16 or AMX), where bf16/fp16 steps take about 30x as long as fp32. "
            "Pass --exact-preset to run the 16-bit rows anyway.")


def _runs_on_cuda(base: RunSpec) -> bool:
    import torch

    return base.device == "cuda" or (base.device == "auto" and torch.cuda.is_available())
