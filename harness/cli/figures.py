"""`spacetime estimate` and `spacetime simulate`: a spec for a target device (CUDA unless --device says
otherwise), its figures, whether they fit a GPU, then one JSON line or the table."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.cli.flags import add_fit_flags, figure_flags, spec_fields
from harness.cli.generate_estimate import add_generate_estimate_flags, generation_figures
from harness.cli.generate_flags import generate_flags
from harness.cli.generate_simulate import generation_simulation
from harness.cli.pipeline_estimate import is_pipeline, pipeline_figures
from harness.cli.progress_flag import add_progress_flags
from harness.core.errors import NotModelled, SpecError, Unsupported
from harness.core.spec import RunSpec
from harness.estimate.assumed import assumed_shape
from harness.estimate.fit import fits_json, inference_bytes, max_batch, memory_limit, profile_for
from harness.estimate.phases import Prediction
from harness.estimate.predict import predict
from harness.estimate.reasons import reasons
from harness.report.figures import print_estimate, print_simulation
from harness.report.generation import print_generation
from harness.report.pipeline_estimate import print_pipeline_estimate
from harness.report.simulated_generation import print_generation_simulation
from harness.report.simulated_pipeline import print_pipeline_simulation
from harness.run.validate import validate

if TYPE_CHECKING:
    from harness.simulate.runner import Simulation

Compute = Callable[[RunSpec, argparse.Namespace], tuple[Any, dict[str, Any]]]
Show = Callable[[RunSpec, Any, dict[str, Any]], None]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("estimate", help="predict per-rank memory without running anything")
    figure_flags(p)
    add_fit_flags(p)
    p.add_argument("--max-batch", action="store_true", help="the largest micro-batch that fits")
    p.add_argument("--inference", action="store_true", help="also the load-only (inference) figure")
    add_generate_estimate_flags(p)
    p = sub.add_parser("simulate", help="run the real step under fake tensors and a fake process group")
    figure_flags(p)
    add_fit_flags(p)
    add_progress_flags(p)
    generate_flags(p)


def estimate_figures(spec: RunSpec, args: argparse.Namespace) -> tuple[Prediction, dict[str, Any]]:
    """The prediction and its JSON: the figures, the shape they assume (`params`: the model's parameter count),
    why each large term is there, and what the flags ask for besides."""
    profile = profile_for(spec)
    prediction = predict(spec, profile, spec.device)
    shape = assumed_shape(spec)
    out: dict[str, Any] = prediction.to_json() | {"params": shape["params"], "shape": shape,
                                                   "why": reasons(spec, prediction, profile)}
    limit = memory_limit(args.gpu, args.gpu_memory)
    if limit:
        out["fits"] = fits_json(limit, prediction.device_bytes)
    if args.max_batch:
        if not limit:
            raise SpecError("max_batch", "needs the memory to fit", "--gpu NAME or --gpu-memory SIZE")
        out["max_batch"] = max_batch(spec, limit[1])
    if args.inference:
        out["inference_bytes"] = inference_bytes(spec)
    return prediction, out


def simulate_figures(spec: RunSpec, args: argparse.Namespace) -> tuple[Simulation, dict[str, Any]]:
    from harness.simulate.runner import simulate  # torch: imported only when simulate runs

    limit = memory_limit(args.gpu, args.gpu_memory)  # bad input is reported before anything runs
    sim = simulate(spec, spec.device)
    out = sim.to_json()
    if limit:
        out["fits"] = fits_json(limit, sim.device_bytes)
    return sim, out


def run_figures(args: argparse.Namespace, compute: Compute, show: Show) -> int:
    """The spec, the figures, then one JSON line or the table; a spec that cannot be handled exits 1 with the
    reason."""
    fields = spec_fields(args)
    fields["device"] = "cuda" if fields.get("device", "auto") == "auto" else fields["device"]
    try:
        spec = validate(RunSpec(**fields), measure=False)
        figures, out = compute(spec, args)
    except Unsupported as why:
        print(f"spacetime: unsupported: {why}", file=sys.stderr)
        return 1
    except NotModelled as why:
        print(f"spacetime: not modelled: {why}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out))
    else:
        show(spec, figures, out)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    if args.workload == "generate":
        return run_figures(args, generation_figures, print_generation)
    return run_figures(args, _estimate_any, _print_any)


def _estimate_any(spec: RunSpec, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """A pipeline's per-stage figures (harness/cli/pipeline_estimate.py), or the one per-rank prediction."""
    return (pipeline_figures if is_pipeline(spec) else estimate_figures)(spec, args)


def _print_any(spec: RunSpec, figures: Any, out: dict[str, Any]) -> None:
    (print_pipeline_estimate if "stages" in out else print_estimate)(spec, figures, out)


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.workload == "generate":
        return run_figures(args, generation_simulation, print_generation_simulation)
    return run_figures(args, simulate_figures, _print_simulation_any)


def _print_simulation_any(spec: RunSpec, sim: Simulation, out: dict[str, Any]) -> None:
    """A pipeline's per-rank table (harness/report/simulated_pipeline.py), or the one per-rank breakdown."""
    (print_pipeline_simulation if "stages" in out else print_simulation)(spec, sim, out)
