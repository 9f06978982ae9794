"""The shape an estimate assumes: the model and its size, the ranks and how they split, the batch per rank and
per step, and every knob, defaults included, so that a figure never stands without what it is a figure of."""

from __future__ import annotations

from typing import Any

from harness.core.spec import RunSpec
from harness.models.zoo import config_for


def assumed_shape(spec: RunSpec) -> dict[str, Any]:
    """The spec's shape as plain values: `global_batch` is sequences per optimizer step over every rank."""
    from strategies import get_strategy

    layout = get_strategy(spec.strategy).layout(spec)
    knobs: dict[str, Any] = {"dtype": spec.dtype, "activation_checkpointing": spec.activation_checkpointing,
                             "optimizer": spec.optimizer, "grad_accum": spec.grad_accum, "lora_rank": spec.lora_rank,
                             "quant": spec.quant}
    if spec.activation_checkpointing == "selective":
        knobs["ckpt_every"] = spec.ckpt_every
    if spec.lora_rank:
        knobs["lora_targets"] = spec.lora_targets
    if spec.loss_type != "full":
        knobs["loss"] = f"{spec.loss_type} ({spec.loss_chunks} chunks)"
    return {"model": spec.model, "params": config_for(spec).param_count(), "strategy": spec.strategy,
            "nproc": spec.nproc, "dp": layout.dp, "tp": layout.tp, "pp": layout.pp, "cp": layout.cp,
            "batch_size": spec.batch_size,
            "seq_len": spec.seq_len, "global_batch": spec.batch_size * spec.grad_accum * layout.dp,
            "device": spec.device, "knobs": knobs}


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "es" if word.endswith("h") else "s")


def shape_lines(shape: dict[str, Any]) -> list[str]:
    """The shape in three lines for the terminal."""
    k = shape["knobs"]
    ckpt = k["activation_checkpointing"] + (f" (1 block in {k['ckpt_every']})" if "ckpt_every" in k else "")
    knobs = [f"dtype {k['dtype']}", f"checkpointing {ckpt}", f"optimizer {k['optimizer']}",
             f"lora rank {k['lora_rank']} on {k['lora_targets']}" if k["lora_rank"] else "no lora",
             f"quant {k['quant']}"] + ([f"loss {k['loss']}"] if "loss" in k else [])
    return [f"assumed: {shape['model']} ({shape['params']:,} params), {shape['strategy']} on "
            f"{_plural(shape['nproc'], 'rank')} = {shape['dp']} data-parallel x {shape['tp']} tensor-parallel"
            + (f" x {shape['pp']} pipeline" if shape.get("pp", 1) > 1 else "")
            + (f" x {shape['cp']} context-parallel" if shape.get("cp", 1) > 1 else "") + f", for {shape['device']}",
            f"  batch {shape['batch_size']} x seq {shape['seq_len']} per data-parallel rank, "
            f"{_plural(k['grad_accum'], 'micro-batch')} per step: global batch {shape['global_batch']:,} "
            "sequences",
            f"  {', '.join(knobs)}"]
