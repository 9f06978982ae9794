"""Tensor parallelism (`tp`, `tp_sp` with sequence parallelism) and 2D FSDP2 + TP (`fsdp_tp`, `fsdp_tp_sp`)
with DTensor's parallelize_module; the plans are in strategies/tp_plans.py.

Attention and MLP projections are split Megatron-style (column-parallel in, row-parallel out), the embedding
row-wise and the output projection column-wise over the vocabulary; `--loss-parallel` keeps the logits sharded
over the vocabulary through the cross-entropy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.errors import SpecError, Unsupported
from harness.models.zoo import config_for
from strategies import register
from strategies.base import ALL_KNOBS, Layout, MemoryProfile, Prepared, Strategy
from strategies.fsdp import DTENSOR_LIMITS, check_dtensor_combinations, divisors, mixed_precision, shard_model
from strategies.tp_checks import check_sequence_split

if TYPE_CHECKING:
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.step import OptimizerFactory
    from harness.train.world import World


@register("tp", "tensor parallel over all ranks: every rank sees the same batch, holds 1/tp of each matrix")
@register("fsdp_tp", "2D: tensor parallel within --tp ranks, FSDP2 across the dp = nproc/tp groups", fsdp=True)
@register("tp_sp", "tensor parallel with sequence parallelism: norms and the residual stream hold 1/tp of the "
          "sequence between blocks", sequence_parallel=True)
@register("fsdp_tp_sp", "2D: tp_sp within --tp ranks, FSDP2 across the dp = nproc/tp groups", fsdp=True,
          sequence_parallel=True)
class TensorParallel(Strategy):
    knobs = ALL_KNOBS - {"quant", "lora", "compile"}
    why_not = {**DTENSOR_LIMITS, "compile": ("not applied to DTensor-sharded blocks here; "
               "use single, ddp or an fsdp_* strategy"),
               "lora": "peft's LoRA layers replace the nn.Linear modules that ColwiseParallel and RowwiseParallel "
                       "shard; use single, ddp or an fsdp_* strategy"}

    def check_knobs(self, spec: RunSpec) -> None:
        if spec.dtype == "fp16" and not self.fsdp:
            raise Unsupported(f"{self.name} with --dtype fp16: the gradient scaler's unscale kernel gets a mix of "
                              "Tensor and DTensor arguments under plain tensor parallelism (torch 2.13); use bf16, "
                              "or fsdp_tp")
        super().check_knobs(spec)
        check_dtensor_combinations(self.name, spec)

    vocab_parallel = True  # takes --loss-parallel (strategies/tp_checks.py)

    def __init__(self, name: str, description: str = "", fsdp: bool = False, sequence_parallel: bool = False) -> None:
        super().__init__(name, description)
        self.fsdp, self.sequence_parallel = fsdp, sequence_parallel
        # tensor-parallel inference: every rank the same prompts, 1/tp of each matrix
        self.generates = not fsdp and not sequence_parallel
        self.shards = "weight matrices by heads/hidden (TP)" + (", activations between blocks by sequence (SP)"
                                                                if sequence_parallel else "") + (
            "; then params, grads, optimizer state across dp (FSDP2)" if fsdp else "")

    def degree(self, spec: RunSpec) -> int:
        if spec.tp:
            return spec.tp
        return 2 if self.fsdp and spec.nproc % 2 == 0 else spec.nproc

    def memory_profile(self, spec: RunSpec) -> MemoryProfile:
        layout = self.layout(spec)
        dp = layout.dp_shard if self.fsdp else 1
        return MemoryProfile(param_div=dp, grad_div=dp, optim_div=dp, tp=layout.tp, casts_params=self.fsdp,
                             gathered="unit" if self.fsdp else "none", keeps_root=self.fsdp,
                             sequence_parallel=self.sequence_parallel, loss_parallel=spec.loss_parallel)

    def layout(self, spec: RunSpec) -> Layout:
        tp = self.degree(spec)
        return Layout(dp_shard=max(spec.nproc // tp, 1), tp=tp)

    def check(self, spec: RunSpec) -> None:
        tp, cfg = self.degree(spec), config_for(spec)
        if not self.fsdp and tp != spec.nproc:
            raise SpecError("tp", f"tp uses every rank for tensor parallelism: --tp must equal --nproc "
                            f"({spec.nproc}), got {tp}", f"0 or {spec.nproc}")
        if spec.nproc % tp:
            raise SpecError("tp", f"{tp} does not divide {spec.nproc} ranks", divisors(spec.nproc))
        if cfg.n_heads % tp or cfg.n_kv_heads % tp:
            ok = ", ".join(str(d) for d in range(1, cfg.n_kv_heads + 1)
                           if cfg.n_heads % d == 0 and cfg.n_kv_heads % d == 0)
            field = "tp" if spec.tp else "nproc"  # without --tp the degree is the rank count
            raise SpecError(field, f"tp degree {tp} does not divide {spec.model}'s {cfg.n_heads} heads and "
                            f"{cfg.n_kv_heads} kv heads", ok)
        if self.sequence_parallel:
            check_sequence_split(spec, tp)

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        from harness.models.checkpointing import apply_checkpointing
        from harness.models.materialize import materialize
        from harness.train.step import make_step
        from strategies.tp_plans import loss_parallel_context, parallelize

        layout = self.layout(spec)
        if self.fsdp:
            mesh = world.mesh((layout.dp_shard, layout.tp), ("dp", "tp"))
            parallelize(model, mesh["tp"], self.sequence_parallel, spec.loss_parallel)
            apply_checkpointing(model, spec)
            shard_model(model, mesh["dp"], mixed_precision(spec))
        else:
            parallelize(model, world.mesh((layout.tp,), ("tp",)), self.sequence_parallel, spec.loss_parallel)
            apply_checkpointing(model, spec)
        materialize(model, world.device, spec.seed)
        optimizer = make_optimizer(model.parameters())
        # with FSDP its mixed precision policy casts; plain TP autocasts.  Gradients are DTensors either way.
        # --loss-parallel: the cross-entropy and its backward run under loss_parallel() (forward and backward of
        # every micro-batch), and the loss, a replicated DTensor, comes back as a plain tensor.
        step = make_step(model, optimizer, spec, world.device, autocast=not self.fsdp, sharded_grads=True,
                         sync=loss_parallel_context if spec.loss_parallel else None)
        return Prepared(model, optimizer, step)

    def wrap_generate(self, model: nn.Module, world: World, spec: RunSpec) -> nn.Module:
        from harness.models.generate import load_weights
        from strategies.tp_plans import parallelize

        parallelize(model, world.mesh((self.degree(spec),), ("tp",)))
        return load_weights(model, world.device, spec)  # each rank's KV cache holds its 1/tp of the kv heads

