"""`spacetime estimate --workload generate`: the generation figures (harness/estimate/generation.py), their fit
on a GPU, and with --max-batch / --max-context the most sequences or the longest context that fit."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.generate_flags import generate_flags
from harness.core.errors import SpecError
from harness.core.knobs import KV_CACHES, OFFLOADS, WORKLOADS
from harness.core.limits import shown
from harness.core.spec import RunSpec
from harness.estimate.fit import fits_json, memory_limit
from harness.estimate.generation import GenPrediction, predict_generation
from harness.estimate.generation_search import max_context, max_generate_batch

# prompt and new tokens as sequence lengths (a 16M-token context at most), beams as a batch
GENERATION_LIMITS = {"prompt_len": (1, 2**24), "new_tokens": (1, 2**24), "num_beams": (1, 2**14)}


def add_generate_estimate_flags(p: argparse.ArgumentParser) -> None:
    generate_flags(p)
    p.add_argument("--max-context", action="store_true", help="--workload generate: the longest prompt + new "
                   "tokens that fits at --batch-size (the new tokens as given)")


def check_generation(spec: RunSpec) -> None:
    """The generation fields estimate reads, before any figure is computed."""
    for field, valid in (("workload", WORKLOADS), ("kv_cache", KV_CACHES), ("offload", OFFLOADS)):
        if getattr(spec, field) not in valid:
            raise SpecError(field, f"unknown value {getattr(spec, field)!r}", ", ".join(valid))
    for field, (lo, hi) in GENERATION_LIMITS.items():
        value = getattr(spec, field)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise SpecError(field, f"{shown(value)} is out of range", f"{lo}..{hi}")


def generation_figures(spec: RunSpec, args: argparse.Namespace) -> tuple[GenPrediction, dict[str, Any]]:
    check_generation(spec)
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
