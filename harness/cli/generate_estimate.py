"""`spacetime estimate --workload generate`: the generation figures (harness/estimate/generation.py), their fit
on a GPU, and with --max-batch / --max-context the most sequences or the longest context that fit.  The spec's
generation fields are checked by validate (harness/run/workload_checks.py) before any figure is computed."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.generate_flags import generate_flags
from harness.core.errors import SpecError
from harness.core.spec import RunSpec
from harness.estimate.fit import fits_json, memory_limit
from harness.estimate.generation import GenPrediction, predict_generation
from harness.estimate.generation_search import max_context, max_generate_batch


def add_generate_estimate_flags(p: argparse.ArgumentParser) -> None:
    generate_flags(p)
    p.add_argument("--max-context", action="store_true", help="--workload generate: the longest prompt + new "
                   "tokens that fits at --batch-size (the new tokens as given)")


def generation_figures(spec: RunSpec, args: argparse.Namespace) -> tuple[GenPrediction, dict[str, Any]]:
    prediction = predict_generation(spec, spec.device)
    out = prediction.to_json()
    limit = memory_limit(args.gpu, args.gpu_memory)
    if limit:
        out["fits"] = fits_json(limit, prediction.device_bytes)
    for flag, search in (("max_batch", max_generate_batch), ("max_context", max_context)):
        if getattr(args, flag, False):
            if not limit:
                raise SpecError(flag, "needs the memory to fit", "--gpu NAME or --gpu-memory SIZE")
            out[flag] = search(spec, limit[1])
    return prediction, out
