"""Pipeline parallelism on torch.distributed.pipelining: the model cut into --pp stages by blocks (embedding with
the first, norm, output projection and loss with the last), each rank's batch split into --pp-microbatches.

`pp_*` run the pipeline over --pp ranks (default: all of them); ranks beyond one pipeline hold replicas of
their stage, whose gradients are averaged after each schedule.  `fsdp_pp` shards each stage with FSDP2 over
the other nproc / pp ranks.
"""

from __future__ import annotations

from math import isqrt
from typing import TYPE_CHECKING, Any

from harness.core.errors import SpecError
from harness.models.zoo import config_for
from strategies import register
from strategies.base import Layout, Prepared, Strategy
from strategies.pipeline_checks import PipelinePlan, bubble_theory, check_pipeline

if TYPE_CHECKING:
    from torch import nn

    from harness.core.spec import RunSpec
    from harness.train.step import OptimizerFactory
    from harness.train.world import World

_NOT_PIPELINED = {
    "grad_accum": "a pipeline splits each rank's batch into --pp-microbatches itself; use that",
    "lora": "peft's adapters are not split into pipeline stages here; use single, ddp or an fsdp_* strategy",
    "quant": "quantized bases are not split into pipeline stages here; use single or ddp",
    "activation_checkpointing=op": "op-level checkpointing is not applied to pipeline stages here; use full or "
                                   "selective",
    "dtype=fp16": "the schedule runs backward itself, with no place for the gradient scaler; use bf16",
}


@register("pp_gpipe", "pipeline, GPipe: all micro-batches forward, then all backward", schedule="gpipe")
@register("pp_1f1b", "pipeline, 1F1B: one forward, one backward in the steady state", schedule="1f1b")
@register("pp_interleaved", "pipeline, interleaved 1F1B: --pp-virtual stages per rank (default 2)",
          schedule="interleaved")
@register("pp_zb", "pipeline, zero bubble (ZB1P): backward split into inputs and weights to fill the bubble",
          schedule="zb")
@register("fsdp_pp", "pipeline 1F1B over --pp ranks, FSDP2 within each stage over nproc / pp ranks",
          schedule="1f1b", fsdp=True)
@register("fsdp_tp_pp", "3D: pipeline 1F1B over --pp, tensor parallel within --tp ranks, FSDP2 over the rest",
          schedule="1f1b", fsdp=True, tp=True)
class Pipeline(Strategy):
    knobs = frozenset({"optimizer", "dtype", "activation_checkpointing"})
    why_not = _NOT_PIPELINED
    pipelines = True

    def __init__(self, name: str, description: str = "", schedule: str = "gpipe", fsdp: bool = False,
                 tp: bool = False) -> None:
        super().__init__(name, description)
        self.schedule, self.fsdp, self.tp = schedule, fsdp, tp
        self.shards = "blocks by stage (pipeline)" + ("; weight matrices by heads/hidden (TP)" if tp else "") + (
            "; params, grads, optimizer state within a stage (FSDP2)" if fsdp else "")

    def degree(self, spec: RunSpec) -> int:
        """--pp; else for the FSDP combinations 2 (or one stage per --tp group where 2 x tp ranks do not divide
        the world); else the most ranks (dividing the world) whose stages x virtual stages the blocks can fill."""
        if spec.pp:
            return spec.pp
        if self.fsdp:  # 2 stages where the ranks take them with --tp each, else every tp group a stage
            tp = self.tp_degree(spec)
            return 2 if spec.nproc % (2 * tp) == 0 else max(spec.nproc // tp, 1)
        n, small = spec.nproc, range(1, isqrt(spec.nproc) + 1)
        fits = [p for d in small if n % d == 0 for p in (d, n // d)
                if p * self.virtual(spec) <= config_for(spec).n_layers]
        return max(fits, default=n)

    def tp_degree(self, spec: RunSpec) -> int:
        return (spec.tp or 2) if self.tp else 1

    def virtual(self, spec: RunSpec) -> int:
        return spec.pp_virtual or (2 if self.schedule in ("interleaved", "zb", "zbv") else 1)

    def microbatches(self, spec: RunSpec) -> int:
        return spec.pp_microbatches or self.degree(spec)

    def layout(self, spec: RunSpec) -> Layout:
        pp, tp = self.degree(spec), self.tp_degree(spec)
        return Layout(dp_shard=max(spec.nproc // pp // tp, 1), tp=tp, pp=pp)

    def check(self, spec: RunSpec) -> None:
        if spec.tp and not self.tp:
            raise SpecError("tp", f"{self.name} has no tensor parallelism", "0 (or fsdp_tp_pp)")
        tp = self.tp_degree(spec)
        check_pipeline(spec, self.name, self.schedule, self.degree(spec), self.virtual(spec),
                       self.microbatches(spec), tp)
        cfg = config_for(spec)
        if cfg.n_heads % tp or cfg.n_kv_heads % tp:
            raise SpecError("tp", f"tp degree {tp} does not divide {spec.model}'s {cfg.n_heads} heads and "
                            f"{cfg.n_kv_heads} kv heads", "a common divisor of both")

    def plan(self, spec: RunSpec) -> PipelinePlan:
        layout = self.layout(spec)
        return PipelinePlan(self.schedule, layout.pp, self.virtual(spec), self.microbatches(spec),
                            shard=layout.dp_shard if self.fsdp else 1, tp=layout.tp)

    def bubble_theory(self, spec: RunSpec) -> float | None:
        return bubble_theory(self.schedule, self.degree(spec), self.virtual(spec), self.microbatches(spec))

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory, world: World,
             spec: RunSpec) -> Prepared:
        from torch.distributed.pipelining import PipelineStage

        from harness.models.materialize import materialize
        from harness.train.pipeline_schedule import SCHEDULES, StageClock, build_schedule, make_pipeline_step
        from harness.train.pipeline_stages import checkpoint_blocks, shard_stage, split_model
        from harness.train.step import AUTOCAST
        from strategies.fsdp import mixed_precision

        layout, virtual = self.layout(spec), self.virtual(spec)
        dp = "dp_shard" if self.fsdp else "dp"
        mesh = world.mesh((layout.pp, layout.dp_shard, layout.tp), ("pp", dp, "tp"))
        pp_group = mesh.get_group("pp")
        autocast = None if self.fsdp else AUTOCAST.get(spec.dtype)
        modules = split_model(model, layout.pp, virtual, mesh.get_local_rank("pp"), SCHEDULES[self.schedule][1],
                              autocast)
        stages = []
        for index, module in modules:
            if self.tp:
                parallelize_stage(module, mesh["tp"])
            checkpoint_blocks(module, spec)
            if self.fsdp:
                shard_stage(module, mesh[dp], {"reshard_after_forward": False, **mixed_precision(spec)})
            materialize(module, world.device, spec.seed)
            stages.append(PipelineStage(module, index, layout.pp * virtual, world.device, group=pp_group))
        holder: Any = _Stages([m for _, m in modules])
        optimizer = make_optimizer(holder.parameters())
        clock = StageClock(world.device)
        schedule = build_schedule(self.schedule, stages, self.microbatches(spec), clock)
        replicas = None if self.fsdp else (mesh.get_group(dp), layout.dp_shard)
        step = make_pipeline_step(schedule, stages, optimizer, clock, pp_group, replicas)
        theory = self.bubble_theory(spec)

        def figures() -> dict[str, Any]:
            return {"bubble": clock.bubble(spec.steps), "bubble_theory": theory,
                    "pp_stages": [index for index, _ in modules]}

        return Prepared(holder, optimizer, step, figures)


def parallelize_stage(stage: Any, tp_mesh: Any) -> None:
    """Megatron TP inside a stage: its blocks by strategies/tp_plans.py's block plan, the embedding row-wise and
    the output projection column-wise with replicated outputs, so what a stage sends on is a plain tensor."""
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    from strategies.tp_plans import block_plan

    root: dict[str, Any] = {}
    if stage.tok_embeddings is not None:
        root["tok_embeddings"] = RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate())
    if stage.output is not None:
        root["output"] = ColwiseParallel(output_layouts=Replicate())
    if root:
        parallelize_module(stage, tp_mesh, root)
    for block in stage.layers.values():
        parallelize_module(block, tp_mesh, block_plan(block, sequence_parallel=False))


def _Stages(modules: list[Any]) -> Any:
    """This rank's stage modules as one module (for the optimizer and the parameter digest)."""
    from torch import nn

    return nn.ModuleList(modules)
