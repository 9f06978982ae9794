"""Making the CPU allocation counter's peak independent of when gloo's worker thread lets go of a collective.

gloo runs each collective on a worker thread, which wakes the waiting training thread and only then drops its
own reference to the collective's buffers (the input and the gathered output of an all-gather).  When those are
the last references, the buffers are freed on the worker a little later, at a moment the scheduler picks: if
the training thread allocates its next tensor first (the log-softmax of just-gathered logits, say), the counted
peak holds them too.  On a loaded machine the worker can keep them until the backward pass.  `settle` waits, on
the training thread, until the counter's live bytes are down to what the program itself still holds, so the
buffers are counted as freed where the program lets go of them, as CUDA's caching allocator counts them.
"""

from __future__ import annotations

import os
import time

from harness.train.cpu_allocator import counting_allocator

SETTLE_TIMEOUT_S = 2.0  # a bound, never reached when the expectation holds: the worker lets go within microseconds


def counting() -> bool:
    """Whether this process loaded the counter (a measured CPU run's rank): elsewhere there is nothing to settle."""
    return counting_allocator.cache_info().currsize > 0


def live_bytes() -> int | None:
    """The counter's live bytes, or None where this process does not count."""
    return int(counting_allocator().current_bytes()) if counting() else None


def settle(target: int | None, timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
    """Wait until the counter's live bytes are at most `target` (yielding to gloo's worker), for at most
    `timeout_s`; True when they are (or nothing is counted).  A no-op where `target` is None."""
    if target is None:
        return True
    counter = counting_allocator()
    deadline = time.monotonic() + timeout_s
    while counter.current_bytes() > target:
        if time.monotonic() > deadline:
            return False
        os.sched_yield()
    return True
