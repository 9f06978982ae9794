"""`spacetime simulate --workload generate`: the generation loop under fake tensors (harness/simulate/
generate_runner.py), its figures and their fit on a GPU."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from harness.core.spec import RunSpec
from harness.estimate.fit import fits_json, memory_limit

if TYPE_CHECKING:
    from harness.simulate.generate_runner import GenSimulation


def generation_simulation(spec: RunSpec, args: argparse.Namespace) -> tuple[GenSimulation, dict[str, Any]]:
    from harness.simulate.generate_runner import simulate_generation  # torch: only when simulate runs

    limit = memory_limit(args.gpu, args.gpu_memory)  # bad input is reported before anything runs
    sim = simulate_generation(spec, spec.device)
    out = sim.to_json()
    if limit:
        out["fits"] = fits_json(limit, sim.device_bytes)
    return sim, out
