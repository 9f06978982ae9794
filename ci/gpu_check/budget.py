"""Run the cases in order within one wall-time budget, writing each result as soon as it exists.

A case starts only if the budget has at least its expected time left; it then runs under the smaller of its
own timeout and what is left.  A case that does not start is written too, as `skipped-budget`, so the folder
always names every case.  Ctrl-C stops the case running (written as `interrupted`) and writes the rest as
`skipped-interrupted`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gpu_check.cases import Case

Result = dict[str, Any]
Runner = Callable[[Case, float], Result]  # (case, timeout in s) -> its result
Writer = Callable[[Case, Result], None]

SKIPPED_BUDGET = "skipped-budget"
SKIPPED_INTERRUPTED = "skipped-interrupted"
INTERRUPTED = "interrupted"


def skipped(case: Case, status: str, reason: str) -> Result:
    return {"case": case.name, "status": status, "reason": reason, "expected_s": case.expected_s}


def run_within(cases: tuple[Case, ...], budget_s: float, runner: Runner, write: Writer,
               clock: Callable[[], float] = time.monotonic, spent_s: float = 0.0) -> list[Result]:
    """Each case's result, in order.  `spent_s`: budget already used before the first case (the install)."""
    start = clock() - spent_s
    results: list[Result] = []
    pending = list(cases)
    while pending:
        case = pending.pop(0)
        left = budget_s - (clock() - start)
        if case.expected_s > left:
            result = skipped(case, SKIPPED_BUDGET, f"{max(left, 0):.0f} s left of the {budget_s:.0f} s budget; "
                             f"the case needs about {case.expected_s:.0f} s")
        else:
            try:
                result = runner(case, min(case.timeout_s, left))
            except KeyboardInterrupt:
                write(case, skipped(case, INTERRUPTED, "stopped by Ctrl-C while it ran"))
                for rest in pending:
                    write(rest, skipped(rest, SKIPPED_INTERRUPTED, "not started: the check was stopped"))
                raise
        write(case, result)
        results.append(result)
    return results
