"""The table of `spacetime simulate --workload generate`: rank 0's figures by phase, as a measured record has
them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from harness.core.spec import RunSpec
from harness.core.units import GIB, MIB
from harness.report.console import console
from harness.report.figures import print_fits

if TYPE_CHECKING:
    from harness.simulate.generate_runner import GenSimulation

ROWS = (("after loading", "load_bytes"), ("prefill peak", "prefill_peak_bytes"),
        ("decode peak", "decode_peak_bytes"), ("KV cache (at the end)", "kv_cache_bytes"))


def print_generation_simulation(spec: RunSpec, sim: GenSimulation, out: dict[str, Any]) -> None:
    quant = f", {spec.quant}" if spec.quant != "none" else ""
    table = Table(title=f"{spec.model}, generate under {spec.strategy} on {spec.nproc} rank(s) (rank 0 simulated), "
                  f"{spec.device}, {spec.dtype}{quant}: batch {spec.batch_size} x {spec.num_beams} beam(s), "
                  f"{spec.prompt_len} + {spec.new_tokens} tokens, {spec.kv_cache} cache", header_style="bold")
    table.add_column("per rank")
    table.add_column("GiB", justify="right")
    for label, key in ROWS:
        table.add_row(label, f"{out[key] / GIB:,.3f}")
    table.add_row("peak (allocator)", f"{sim.peak_bytes / GIB:,.3f}")
    if sim.context_bytes:
        table.add_row("peak + CUDA context", f"{sim.device_bytes / GIB:,.3f}")
    console().print(table)
    print_fits(out)
    print(f"simulated in {sim.seconds:.1f} s, {sim.rss_peak_bytes / MIB:,.0f} MiB RSS")
