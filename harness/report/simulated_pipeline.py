"""The terminal table of `spacetime simulate` for a pipeline: one row per pipeline rank (the rank simulated for it
and its breakdown in GiB), then the fit of the largest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from harness.core.memory import CATEGORIES
from harness.core.spec import RunSpec
from harness.core.units import GIB, MIB
from harness.report.console import console
from harness.report.figures import print_fits

if TYPE_CHECKING:
    from harness.simulate.runner import Simulation

SHORT = {"optimizer": "optim", "activations": "acts", "temporaries": "temps", "context": "ctx"}


def print_pipeline_simulation(spec: RunSpec, sim: Simulation, out: dict[str, Any]) -> None:
    stages = out["stages"]
    title = (f"{spec.model}, {spec.strategy} on {spec.nproc} rank(s), each pipeline rank simulated (GiB), "
             f"{spec.device}, {spec.dtype}, batch {spec.batch_size} x {spec.seq_len}")
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, padding=0)
    shown = [k for k in CATEGORIES if any(s["breakdown"].get(k) for s in stages)]  # no empty columns
    for name in ("pp\nrank", "rank", *(SHORT.get(k, k) for k in shown), "peak", "device"):
        table.add_column(name, justify="right")
    for s in stages:
        context = s["breakdown"].get("context", 0)
        table.add_row(str(s["pp_rank"]), str(s["rank"]), *(f"{s['breakdown'].get(k, 0) / GIB:,.3f}" for k in shown),
                      f"{s['peak_bytes'] / GIB:,.3f}", f"{(s['peak_bytes'] + context) / GIB:,.3f}")
    console().print(table)
    print(f"largest: {out['device_bytes'] / GIB:,.3f} GiB on the device")
    print_fits(out)
    print(f"simulated in {sim.seconds:.1f} s, {sim.rss_peak_bytes / MIB:,.0f} MiB RSS")
