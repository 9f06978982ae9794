"""`spacetime estimate` of a pipeline strategy: every pipeline rank's peak (the stages differ), the largest
beside the schedule's theoretical bubble, and whether it fits a GPU."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from harness.core.spec import RunSpec
from harness.estimate.assumed import assumed_shape
from harness.estimate.fit import fits_json, memory_limit
from harness.estimate.pipeline_memory import StageMemory, predict_stages
from strategies import get_strategy


def is_pipeline(spec: RunSpec) -> bool:
    return bool(getattr(get_strategy(spec.strategy), "pipelines", False))


def pipeline_figures(spec: RunSpec, args: argparse.Namespace) -> tuple[list[StageMemory], dict[str, Any]]:
    """Each pipeline rank's breakdown (`stages`), and at the top level the largest one's, as for any strategy."""
    strategy: Any = get_strategy(spec.strategy)
    plan = strategy.plan(spec)
    stages = predict_stages(spec, plan)
    worst = max(stages, key=lambda s: s.device_bytes)
    out: dict[str, Any] = {"peak_bytes": worst.peak_bytes, "device_bytes": worst.device_bytes,
                           "phase": f"pipeline rank {worst.rank}: {worst.phase}", "breakdown": dict(worst.breakdown),
                           "stages": [s.to_json() for s in stages], "bubble_theory": strategy.bubble_theory(spec),
                           "params": assumed_shape(spec)["params"], "shape": assumed_shape(spec),
                           "plan": asdict(plan)}
    limit = memory_limit(args.gpu, args.gpu_memory)
    if limit:
        out["fits"] = fits_json(limit, worst.device_bytes)
    return stages, out
