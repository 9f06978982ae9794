"""Context parallelism after torchtitan: every sequence split over --cp ranks, attention as ring attention over
SDPA (torch.distributed.tensor.experimental.context_parallel, load-balanced), and the parameters, gradients and
optimizer state sharded by FSDP2 over the data-parallel and context-parallel ranks together, as torchtitan folds
cp into its FSDP mesh (dp_shard x cp).

- `cp`: every rank in one context-parallel group (--cp = --nproc), FSDP2 over the same ranks;
- `fsdp_cp`: --cp ranks per sequence (default 2), FSDP2 over all of them (nproc / cp data-parallel ranks);
- `fsdp_tp_cp`: tensor parallelism with sequence parallelism within --tp ranks besides, as torchtitan's 3D.

torch's ring attention shards CUDA's SDPA kernels only; on CPU, harness/train/cpu_ring_attention.py hands it the
CPU's flash kernel, so cp and fsdp_cp measure there (their loss matches single's).  fsdp_tp_cp is `estimate`
only: a measured run does not combine the ring with tensor parallelism yet.  `estimate` models all three
(harness/estimate/context_parallel_memory.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.errors import SpecError
from harness.models.zoo import config_for
from strategies import register
from strategies.base import Layout, MemoryProfile, Prepared, Strategy
from strategies.cp_checks import CP_SIMULATE, CP_WITH_TP, check_context_parallel

if TYPE_CHECKING:
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.step import OptimizerFactory
    from harness.train.world import World

_NOT_APPLIED = {
    "lora": "peft's adapters are not combined with context parallelism here; use single, ddp or an fsdp_* strategy",
    "quant": "quantized bases are not combined with context parallelism here; use single or ddp",
    "compile": "torch.compile is not combined with context parallelism here; use single, ddp or an fsdp_* strategy",
}


@register("cp", "context parallel over all ranks: each holds 1/nproc of every sequence (ring attention), FSDP2 "
          "over the same ranks", whole=True)
@register("fsdp_cp", "context parallel within --cp ranks (default 2), FSDP2 over all ranks (dp_shard x cp)")
@register("fsdp_tp_cp", "3D: tp_sp within --tp ranks, context parallel over --cp, FSDP2 over dp_shard x cp",
          tp=True)
class ContextParallel(Strategy):
    knobs = frozenset({"optimizer", "dtype", "activation_checkpointing", "grad_accum", "loss"})
    why_not = _NOT_APPLIED
    simulate_why_not = CP_SIMULATE
    context_parallel = True  # reads --cp (strategies/cp_checks.py: refuse_cp)

    def __init__(self, name: str, description: str = "", whole: bool = False, tp: bool = False) -> None:
        super().__init__(name, description)
        self.whole, self.tp = whole, tp
        if tp:  # measured runs: cp and fsdp_cp (on CPU through harness/train/cpu_ring_attention.py)
            self.device_why_not = {"cpu": CP_WITH_TP, "cuda": CP_WITH_TP}
        self.shards = "sequences by context (ring attention)" + (
            "; weight matrices by heads/hidden (TP), activations between blocks by sequence (SP)" if tp else "") + (
            "; params, grads, optimizer state across dp x cp (FSDP2)")

    def degree(self, spec: RunSpec) -> int:
        """--cp; else every rank (`cp`), or 2 where the ranks take 2 x tp, else 1 (no split)."""
        if spec.cp or self.whole:
            return spec.cp or spec.nproc
        return 2 if spec.nproc % (2 * self.tp_degree(spec)) == 0 else 1

    def tp_degree(self, spec: RunSpec) -> int:
        return (spec.tp or 2) if self.tp else 1

    def layout(self, spec: RunSpec) -> Layout:
        cp, tp = self.degree(spec), self.tp_degree(spec)
        return Layout(dp_shard=max(spec.nproc // (cp * tp), 1), tp=tp, cp=cp)

    def memory_profile(self, spec: RunSpec) -> MemoryProfile:
        layout = self.layout(spec)
        shard = layout.dp_shard * layout.cp  # torchtitan's dp_shard_cp mesh
        # the root resharded after forward as fsdp_full_shard does; kept under TP as fsdp_tp_sp's default
        return MemoryProfile(param_div=shard, grad_div=shard, optim_div=shard, tp=layout.tp, casts_params=True,
                             gathered="unit", keeps_root=self.tp, sequence_parallel=layout.tp > 1, cp=layout.cp)

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        from harness.models.checkpointing import apply_checkpointing
        from harness.models.materialize import materialize
        from harness.train.context_parallel_step import sequence_sharded
        from harness.train.step import make_step
        from strategies.fsdp import mixed_precision, shard_model

        layout = self.layout(spec)
        mesh = world.mesh((layout.dp_shard, layout.cp), ("dp_shard", "cp"))
        apply_checkpointing(model, spec)
        # FSDP2 over dp_shard x cp, as torchtitan's dp_shard_cp mesh; the root resharded as fsdp_full_shard's
        shard_model(model, mesh["dp_shard", "cp"]._flatten("dp_shard_cp"),
                    {"reshard_after_forward": True, **mixed_precision(spec)})
        materialize(model, world.device, spec.seed)
        optimizer = make_optimizer(model.parameters())
        step = make_step(model, optimizer, spec, world.device, autocast=False, sharded_grads=True)
        return Prepared(model, optimizer, sequence_sharded(step, model, mesh["cp"]))

    def check(self, spec: RunSpec) -> None:
        if spec.tp and not self.tp:
            raise SpecError("tp", f"{self.name} has no tensor parallelism", "0 (or fsdp_tp_cp)")
        tp = self.tp_degree(spec)
        cfg = config_for(spec)
        if cfg.n_heads % tp or cfg.n_kv_heads % tp:
            raise SpecError("tp", f"tp degree {tp} does not divide {spec.model}'s {cfg.n_heads} heads and "
                            f"{cfg.n_kv_heads} kv heads", "a common divisor of both")
        check_context_parallel(spec, self.name, self.degree(spec), tp, self.whole)
