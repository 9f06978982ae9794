"""The terminal table of `spacetime estimate` for a pipeline: one row per pipeline rank (its stages, blocks,
micro-batches in flight and breakdown in GiB), then the fit of the largest."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from harness.core.memory import CATEGORIES
from harness.core.spec import RunSpec
from harness.core.units import GIB
from harness.estimate.assumed import shape_lines
from harness.estimate.pipeline_memory import StageMemory
from harness.report.console import console
from harness.report.figures import print_fits


def _span(values: tuple[int, ...]) -> str:
    if not values:
        return "-"
    if list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}" if len(values) > 1 else str(values[0])
    return ",".join(str(v) for v in values)


def print_pipeline_estimate(spec: RunSpec, stages: list[StageMemory], out: dict[str, Any]) -> None:
    for line in shape_lines(out["shape"]):
        print(line)
    bubble = out.get("bubble_theory")
    title = f"per pipeline rank (GiB), {spec.strategy}" + ("" if bubble is None else f", bubble {bubble:.1%}")
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=0)  # the box puts one space between columns: 80 fit
    shown = [k for k in CATEGORIES if any(s.breakdown.get(k) for s in stages)]  # no empty columns
    short = {"optimizer": "optim", "activations": "acts", "temporaries": "temps", "context": "ctx"}
    for name in ("rank", "stages", "blocks", "in\nflight", *(short.get(k, k) for k in shown), "peak", "device"):
        table.add_column(name, justify="right")
    for s in stages:
        table.add_row(str(s.rank), _span(s.stages), _span(s.blocks), str(s.in_flight),
                      *(f"{s.breakdown.get(k, 0) / GIB:,.1f}" for k in shown),
                      f"{s.peak_bytes / GIB:,.1f}", f"{s.device_bytes / GIB:,.1f}")
    console().print(table)
    plan = out["plan"]
    print(f"pipeline: {plan['pp']} ranks x {plan['virtual']} stage(s) each, {plan['micro']} micro-batches per "
          f"rank's batch, {plan['schedule']} schedule; state sharded over {plan['shard']}, tp {plan['tp']}")
    print(f"largest: {out['phase']}, {out['device_bytes'] / GIB:,.2f} GiB on the device")
    print_fits(out)
