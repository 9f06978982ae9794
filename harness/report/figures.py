"""The terminal tables of `spacetime estimate` and `spacetime simulate`: a per-rank breakdown, the fit on a GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from harness.core.memory import PeakFigures
from harness.core.spec import RunSpec
from harness.core.units import GIB, MIB
from harness.estimate.assumed import shape_lines
from harness.estimate.phases import Prediction
from harness.estimate.reasons import SHARE
from harness.estimate.rules_of_thumb import source_arithmetic
from harness.models.zoo import config_for
from harness.report.console import console

if TYPE_CHECKING:
    from harness.simulate.runner import Simulation


def breakdown_table(title: str, heading: str, figures: PeakFigures, digits: int) -> Table:
    """A per-rank breakdown in GiB, then the allocator's peak and the device total (the CUDA context added)."""
    table = Table(title=title, header_style="bold")
    table.add_column(heading)
    table.add_column("GiB", justify="right")
    rows = [*figures.breakdown.items(), ("peak (allocator)", figures.peak_bytes),
            ("device total", figures.device_bytes)]
    for name, value in rows:
        table.add_row(name, f"{value / GIB:,.{digits}f}")
    return table


def print_estimate(spec: RunSpec, prediction: Prediction, out: dict[str, Any]) -> None:
    """The shape assumed, the breakdown, why its large terms are there, then what the flags asked for."""
    cfg = config_for(spec)
    for line in shape_lines(out["shape"]):
        print(line)
    title = f"peak at {prediction.phase}"
    table = breakdown_table(title, "per rank", prediction, digits=2)
    if prediction.host_bytes:
        table.add_row("offloaded to host", f"{prediction.host_bytes / GIB:,.2f}")
    console().print(table)
    if out["why"]:
        print(f"why (terms above {SHARE:.0%} of the device total):")
    for name, why in out["why"].items():
        print(f"  {name}: {why}")
    print_fits(out)
    if "max_batch" in out:
        print(f"largest micro-batch that fits: {out['max_batch']}")
    if "inference_bytes" in out:
        print(f"load only (inference weights + context): {out['inference_bytes'] / GIB:,.2f} GiB")
    naive = ", ".join(f"{k} {v:,.2f}" for k, v in source_arithmetic(cfg).items())
    print(f"rule of thumb for {cfg.param_count():,} params (GiB): {naive}")


def print_fits(out: dict[str, Any]) -> None:
    fits = out.get("fits")
    if fits:
        verdict = "fits" if fits["fits"] else "does not fit"
        print(f"{verdict} on {fits['device']} ({fits['capacity_bytes'] / GIB:,.2f} GiB): "
              f"{fits['free_bytes'] / GIB:+,.2f} GiB left")


def print_simulation(spec: RunSpec, sim: Simulation, out: dict[str, Any]) -> None:
    title = (f"{spec.model}, {spec.strategy} on {spec.nproc} rank(s) (rank 0 simulated), {spec.device}, "
             f"{spec.dtype}, batch {spec.batch_size} x {spec.seq_len}")
    console().print(breakdown_table(title, "per rank at the peak", sim, digits=3))
    print_fits(out)
    print(f"simulated in {sim.seconds:.1f} s, {sim.rss_peak_bytes / MIB:,.0f} MiB RSS")
