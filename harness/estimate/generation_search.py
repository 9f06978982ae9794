"""The most a device holds under generation, by binary search over the analytic model (generation.py): the
most concurrent sequences at a given context (`--max-batch`), the longest context at a given batch
(`--max-context`: prompt + new tokens, the new tokens as given)."""

from __future__ import annotations

from collections.abc import Callable

from harness.core.limits import LIMITS
from harness.core.spec import RunSpec
from harness.estimate.generation import predict_generation

CEILING = LIMITS["seq_len"][1]  # the longest sequence a spec may have


def largest(fits: Callable[[int], bool], low: int = 1, ceiling: int = CEILING) -> int:
    """The largest n in low..ceiling with fits(n), for a `fits` that holds up to some n and not past it;
    low - 1 when not even `low` fits."""
    if not fits(low):
        return low - 1
    lo, hi = low, low * 2
    while hi <= ceiling and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, ceiling + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def fits_on(spec: RunSpec, limit: int) -> bool:
    """Whether `spec`'s predicted device bytes (the CUDA context included on a CUDA target) fit `limit`."""
    return predict_generation(spec, spec.device).device_bytes <= limit


def max_generate_batch(spec: RunSpec, limit: int) -> int:
    """The most prompts per rank (each with its beams) that fit `limit` at the spec's context, up to the rows a
    batch may have; 0: none."""
    ceiling = max(LIMITS["batch_size"][1] // spec.num_beams, 1)
    return largest(lambda batch: fits_on(spec.with_(batch_size=batch), limit), ceiling=ceiling)


def max_context(spec: RunSpec, limit: int) -> int:
    """The longest prompt + new tokens that fits `limit` at the spec's batch, the new tokens as given (the
    prompt at least one token); 0: none."""
    ceiling = max(CEILING - spec.new_tokens, 1)
    found = largest(lambda prompt: fits_on(spec.with_(prompt_len=prompt), limit), ceiling=ceiling)
    return found + spec.new_tokens if found else 0
