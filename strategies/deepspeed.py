"""DeepSpeed ZeRO stages 1-3, with optimizer (and parameter) offload to CPU memory.

The DeepSpeed config is built from the RunSpec (`ds_config`): batch and gradient accumulation, precision,
ZeRO stage and offload, and the optimizer, so no JSON is edited by hand.  The engine owns backward (it
scales by 1/grad_accum) and the optimizer step (taken at the accumulation boundary).  Activation
checkpointing and LoRA adapters are applied to the model before `deepspeed.initialize`, as for the other
strategies; the optimizer is DeepSpeed's own from the config (FusedAdam on GPUs, DeepSpeedCPUAdam with
offload; on a CPU without offload torch's AdamW, which DeepSpeed takes with `torch_adam`), so the measured path
is the one DeepSpeed users run.  DeepSpeed compiles its C++ ops on first use (minutes) into this environment's
extension folder (harness/train/ext_builds.py: keyed under $TORCH_EXTENSIONS_DIR): keep it between runs.  The
launcher builds them in a child process under the run's --timeout (harness/run/prebuild.py).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any

from harness.core.errors import Unsupported
from harness.models.zoo import config_for
from harness.train.ext_builds import extensions_env, prepare_build
from strategies import register
from strategies.base import ALL_KNOBS, MemoryProfile, Prepared, Strategy
from strategies.deepspeed_generate import GENERATE_WHY_NOT, generate_config, zero3_inference

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.step import Batch, OptimizerFactory
    from harness.train.world import World

ZERO_LIMITS = {
    "loss=chunked": "the engine's step takes the full logits through the loss (not the chunked projection); "
                    "use single, ddp or fsdp_full_shard",
    "quant": "ZeRO flattens and partitions fp32/16-bit parameters; bitsandbytes' packed weights are not "
             "partitionable, and torchao's quantized tensors are not wired to be; use single, ddp",
    "dtype=bf16-pure": "DeepSpeed's bf16 keeps fp32 master weights in the optimizer (that is --dtype bf16); "
                       "pure bf16 training is not a DeepSpeed mode",
    "optimizer=adamw8bit": "the DeepSpeed config names DeepSpeed's own optimizers; an 8-bit client optimizer "
                           "would step ZeRO's flat 1-D partitions, not the tensors it quantizes blockwise",
    "optimizer=adafactor": "Adafactor factors the second moment per matrix, and ZeRO steps flat 1-D "
                           "partitions; use single, ddp",
    "compile": ("not applied: DeepSpeed compiles through its own engine.compile(), not wired in here; use ddp or "
                "fsdp_full_shard"),
}


def ds_config(spec: RunSpec, stage: int, offload_optimizer: bool = False, offload_params: bool = False,
              dp: int | None = None) -> dict[str, Any]:
    """The DeepSpeed config for `spec` on `dp` data-parallel ranks (default: spec.nproc)."""
    dp = spec.nproc if dp is None else dp
    pin = spec.device == "cuda"  # pinning host memory needs an accelerator
    # Bucket sizes as the Hugging Face Trainer fills DeepSpeed's "auto" values: DeepSpeed's own defaults
    # (a 5e8-element reduce bucket, allocated up front) dwarf the states of any model below a few billion.
    hidden = config_for(spec).dim
    zero: dict[str, Any] = {"stage": stage, "reduce_bucket_size": hidden * hidden}
    if stage == 3:
        zero["stage3_prefetch_bucket_size"] = int(0.9 * hidden * hidden)
        zero["stage3_param_persistence_threshold"] = 10 * hidden
        # Release a gathered parameter after use unless it is used again soon, as FSDP's full shard does.
        # DeepSpeed's defaults (1e9 elements live, reuse distance 1e9) keep every parameter of a model
        # below a billion gathered from forward to backward, and ZeRO-3 would then save nothing there.
        zero["stage3_max_live_parameters"] = zero["stage3_max_reuse_distance"] = int(0.9 * hidden * hidden)
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
    if offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
    params: dict[str, Any] = {"lr": spec.lr, "momentum": 0.9}
    if spec.optimizer != "sgd":
        params = {"lr": spec.lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}
        if spec.device == "cpu" and not offload_optimizer:  # FusedAdam is a GPU kernel; its CPU build is
            params["torch_adam"] = True  # a 1.5-minute compile for the same update as torch's
    optimizer = {"type": "SGD" if spec.optimizer == "sgd" else "AdamW", "params": params}
    return {
        "train_micro_batch_size_per_gpu": spec.batch_size,
        "gradient_accumulation_steps": spec.grad_accum,
        "train_batch_size": spec.batch_size * spec.grad_accum * dp,
        "bf16": {"enabled": spec.dtype == "bf16"},
        "fp16": {"enabled": spec.dtype == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_optimization": zero,
        "optimizer": optimizer,
        # SGD is torch's: let ZeRO-Offload step it on the CPU rather than insist on DeepSpeedCPUAdam
        "zero_force_ds_cpu_optimizer": spec.optimizer == "adamw",
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 0.0,  # the other strategies do not clip either
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


@register("zero1", "DeepSpeed ZeRO-1: optimizer state partitioned", stage=1)
@register("zero2", "DeepSpeed ZeRO-2: optimizer state and gradients partitioned", stage=2)
@register("zero3", "DeepSpeed ZeRO-3: parameters, gradients and optimizer state partitioned", stage=3)
@register("zero2_offload", "DeepSpeed ZeRO-2 with optimizer state (and its step) offloaded to CPU memory",
          stage=2, offload_optimizer=True)
@register("zero3_offload", "DeepSpeed ZeRO-3 with parameters and optimizer state offloaded to CPU memory",
          stage=3, offload_optimizer=True, offload_params=True)
class DeepSpeedZero(Strategy):
    knobs = ALL_KNOBS - {"quant", "compile"}
    why_not = ZERO_LIMITS
    simulate_why_not = ("DeepSpeed's engine reads real data while it sets up (flat partitions, C++ ops, "
                        "launcher environment); measure it with `spacetime run`")

    def __init__(self, name: str, description: str = "", stage: int = 1, offload_optimizer: bool = False,
                 offload_params: bool = False) -> None:
        super().__init__(name, description)
        self.stage = stage
        self.offload_optimizer = offload_optimizer
        self.offload_params = offload_params
        parts = ["optimizer state", "grads", "params"][:stage]
        moved = (" (params and optimizer state in CPU memory)" if offload_params else
                 " (optimizer state in CPU memory)" if offload_optimizer else "")
        self.shards = ", ".join(parts) + moved
        # --workload generate: ZeRO-3 inference (strategies/deepspeed_generate.py), the others say why not
        self.generates = stage == 3 and not offload_params
        self.generate_why_not = GENERATE_WHY_NOT.get("offload" if offload_params else stage, "")

    def check(self, spec: RunSpec) -> None:
        if importlib.util.find_spec("deepspeed") is None:
            raise Unsupported(f"{self.name}: deepspeed is not installed (pip install 'spacetime[deepspeed]')")
        if spec.dtype == "fp16" and spec.device == "cpu" and not _cpu_has_fp16():
            raise Unsupported(f"{self.name} with --dtype fp16 on this cpu: DeepSpeed's CPU accelerator takes fp16 "
                              "only where oneDNN has fp16 kernels (AVX-512 FP16 or AMX), and this CPU has none "
                              "(\"Type fp16 is not supported on your device\"); use --dtype bf16")

    def prepare_host(self, spec: RunSpec) -> None:
        """Build (or load from the extension folder) the C++ ops the ranks will load, once, here."""
        # Name the accelerator (the ranks inherit it): DeepSpeed would otherwise guess, and warn on CPU.
        os.environ.setdefault("DS_ACCELERATOR", spec.device)
        for name in self.op_builders(spec):
            build_op(name)

    def op_builders(self, spec: RunSpec) -> list[str]:
        names = ["ShareMemCommBuilder"] if spec.device == "cpu" else []  # DeepSpeed's CPU all-reduce
        if spec.optimizer == "adamw" and self.offload_optimizer:
            names.append("CPUAdamBuilder")  # ZeRO-Offload's optimizer, on CPU and GPU machines alike
        elif spec.optimizer == "adamw" and spec.device == "cuda":
            names.append("FusedAdamBuilder")
        return names

    def memory_profile(self, spec: RunSpec) -> MemoryProfile:
        """The stage and what is offloaded; harness/estimate/zero.py partitions over spec.nproc ranks."""
        moved = {"optimizer"} if self.offload_optimizer else set()
        return MemoryProfile(casts_params=True, zero=self.stage,
                             offload=frozenset(moved | ({"params"} if self.offload_params else set())))

    def config(self, spec: RunSpec, dp: int | None = None) -> dict[str, Any]:
        return ds_config(spec, self.stage, self.offload_optimizer, self.offload_params, dp)

    def framework_config(self, spec: RunSpec) -> dict[str, Any]:
        return self.config(spec)

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        import deepspeed

        from harness.models.checkpointing import apply_checkpointing
        from harness.models.lora import add_adapters
        from harness.models.materialize import materialize

        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        model = add_adapters(model, spec)
        materialize(model, world.device, spec.seed)  # every rank fills the same values; ZeRO keeps its part
        apply_checkpointing(model, spec)
        trainable = [p for p in model.parameters() if p.requires_grad]
        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=trainable,
                                               config=self.config(spec, world.world_size),
                                               dist_init_required=False)
        return Prepared(engine, engine.basic_optimizer, _engine_step(engine, spec, world.device))

    def wrap_generate(self, model: nn.Module, world: World, spec: RunSpec) -> nn.Module:
        """ZeRO-3 inference: parameters partitioned, each module's gathered by ZeRO's hooks in its forward."""
        zero = ds_config(spec, self.stage, dp=world.world_size)["zero_optimization"]
        return zero3_inference(model, world, spec, generate_config(zero, spec, world.world_size))


def _cpu_has_fp16() -> bool:
    """DeepSpeed's own test for fp16 on its CPU accelerator."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False


def build_op(name: str) -> None:
    """Compile DeepSpeed's op `name` for this machine's accelerator, or load it from the build cache (this
    environment's extension folder; a stale build lock there is removed first)."""
    os.environ.update(extensions_env())  # DeepSpeed builds under $TORCH_EXTENSIONS_DIR; the ranks inherit it
    from deepspeed.accelerator import get_accelerator
    from deepspeed.ops import __compatible_ops__

    builder = get_accelerator().create_op_builder(name)
    if builder is not None and __compatible_ops__.get(builder.NAME, False):
        prepare_build(builder.name, f"DeepSpeed op {name} ({builder.name})")
        builder.load(verbose=False)


def _engine_step(engine: Any, spec: RunSpec, device: torch.device) -> Any:
    from harness.train.step import loss_fn, over_micro_batches

    accum = spec.grad_accum

    def micro(x: torch.Tensor, y: torch.Tensor, last: bool) -> torch.Tensor:
        loss = loss_fn(engine(x), y)
        engine.backward(loss)  # scales by 1/grad_accum itself
        engine.step()  # the optimizer steps at the accumulation boundary only
        return loss.detach().float() / accum

    def step(batch: Batch) -> torch.Tensor:
        return over_micro_batches(batch, accum, device, micro)

    return step
