"""The terminal table of `spacetime estimate --workload generate`: the per-rank breakdown at generation's
peak, the peak of each phase, the fit and the searches, and the rule of thumb beside the estimated weights."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from harness.core.spec import RunSpec
from harness.core.units import GIB
from harness.estimate.generation import GenPrediction
from harness.estimate.load_bytes import rule_table
from harness.models.zoo import config_for
from harness.report.console import console
from harness.report.figures import breakdown_table, print_fits

PHASE_FIGURES = (("load (weights)", "load_bytes"), ("prefill peak", "prefill_peak_bytes"),
                 ("decode peak", "decode_peak_bytes"), ("KV cache at the end", "kv_cache_bytes"))


def print_generation(spec: RunSpec, prediction: GenPrediction, out: dict[str, Any]) -> None:
    cfg = config_for(spec)
    quant = f", {spec.quant}" if spec.quant != "none" else ""
    print(f"{spec.model} ({cfg.param_count():,} params), generate under {spec.strategy} on {spec.nproc} rank(s), "
          f"{spec.device}, {spec.dtype}{quant}: batch {spec.batch_size} x {spec.num_beams} beam(s), "
          f"{spec.prompt_len} + {spec.new_tokens} tokens, {spec.kv_cache} cache, offload {spec.offload}")
    table = breakdown_table(f"peak at {prediction.phase}", "per rank", prediction, digits=3)
    for label, key in PHASE_FIGURES:
        table.add_row(label, f"{out[key] / GIB:,.3f}")
    if prediction.host_bytes:
        table.add_row("offloaded to host", f"{prediction.host_bytes / GIB:,.3f}")
    console().print(table)
    print_fits(out)
    if "max_batch" in out:
        print(f"most prompts per rank that fit ({spec.num_beams} beam(s) each): {out['max_batch']}")
    if "max_context" in out:
        print(f"longest prompt + new tokens that fits at batch {spec.batch_size}: {out['max_context']}")
    console().print(rule_of_thumb(spec))


def rule_of_thumb(spec: RunSpec) -> Table:
    """The weights by the rule (parameters x 4, 2, 1, 0.5 B) beside the estimate, and what the difference
    is made of: the quantizer's scales, and the embedding, norms and output head kept in 16 bits."""
    cfg = config_for(spec)
    table = Table(title=f"loading {cfg.name}: the rule of thumb beside the estimate (GiB, whole model)",
                  header_style="bold")
    for heading in ("weights", "rule", "estimate", "scales", "16-bit layers"):
        table.add_column(heading, justify="right" if heading != "weights" else "left")
    for row in rule_table(cfg, spec):
        table.add_row(str(row["row"]), *(f"{float(row[k]):,.2f}" for k in
                                         ("rule_gib", "estimate_gib", "scales_gib", "unquantized_gib")))
    return table
