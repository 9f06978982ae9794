"""The regression gate: compare one commit's records with a baseline commit's, figure by figure.

Records are matched on what was run (every spec field that changes the figures) and where (device name).
Each figure has a noise-aware tolerance:
- memory is close to deterministic, so its tolerance is tight: 1% (at least 256 KiB).  Where a commit has
  several records of one case (`spacetime sweep --repeat N`), the candidate's smallest value is compared with
  the baseline's largest, so a figure that varies by itself (FSDP on gloo, by one gathered layer) does not
  read as a change;
- time is noisy, so its tolerance is wider and comes from the records' own spread: the largest of a floor
  (10% by default), twice the widest p10-p90 range (relative to p50) among the runs compared, and twice the
  range of p50 between repeats on either side; medians over repeats are compared.
A case whose baseline was `ok` and whose candidate is not is a regression too (an `interrupted` run aside).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from harness.core.errors import SpecError
from harness.core.record import INTERRUPTED
from harness.core.spec import RunSpec

# Spec fields that do not change what a run measures, so records that differ only in these still match.
_NOT_KEY = {"timeout_s", "steps", "warmup", "memory_steps"}
MEMORY_FIGURES = ("peak_bytes", "reserved_peak_bytes")
TIME_FIGURES = ("step_s_p50",)
GENERATE_FIGURES = ("load_bytes", "decode_peak_bytes")  # beside peak_bytes: what loading and decoding keep
GENERATE_TIME_FIGURES = ("decode_s_per_token_p50",)  # a generate record has no training step
MEMORY_REL_TOL = 0.01
MEMORY_ABS_TOL = 256 * 1024
TIME_REL_FLOOR = 0.10
TIME_SPREAD_FACTOR = 2.0


@dataclass(frozen=True)
class Change:
    case: str
    figure: str
    baseline: float | None
    candidate: float | None
    tolerance: float  # relative
    verdict: str  # same, regression, improved, new, missing, failed

    @property
    def relative(self) -> float | None:
        if self.baseline in (None, 0) or self.candidate is None:
            return None
        return self.candidate / self.baseline - 1  # type: ignore[operator]


def case_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(n) for n in RunSpec.__dataclass_fields__ if n not in _NOT_KEY) + (row.get("device_name"),)


def case_label(row: dict[str, Any]) -> str:
    """Short name of a case: model, strategy, ranks, shape, then any other field off its default."""
    default = RunSpec()
    shown = {"model", "strategy", "nproc", "batch_size", "seq_len", "device"} | _NOT_KEY
    extra = [f"{n}={row.get(n)}" for n in RunSpec.__dataclass_fields__
             if n not in shown and row.get(n) != getattr(default, n)]
    head = f"{row['model']} {row['strategy']} x{row['nproc']} {row['device']} b{row['batch_size']} s{row['seq_len']}"
    return " ".join([head, *extra])


def commits(rows: list[dict[str, Any]]) -> list[str]:
    """Commits in the order their newest record was made (oldest first)."""
    newest: dict[str, str] = {}
    for row in rows:
        commit = row.get("git_commit") or "unknown"
        newest[commit] = max(newest.get(commit, ""), row.get("utc_time") or "")
    return sorted(newest, key=lambda c: newest[c])


def resolve(ref: str, known: list[str]) -> str:
    """A commit label from a prefix (exact match first)."""
    if ref in known:
        return ref
    matches = [c for c in known if c.startswith(ref)]
    if len(matches) != 1:
        found = "none" if not matches else f"{len(matches)}: " + ", ".join(matches)
        raise SpecError("baseline", f"{ref!r} matches {found} of the stored commits", ", ".join(known))
    return matches[0]


def _memory(case: str, figure: str, base: list[float], cand: list[float]) -> Change:
    reference, value = max(base), min(cand)
    tol = max(MEMORY_REL_TOL, MEMORY_ABS_TOL / reference) if reference else MEMORY_REL_TOL
    if value > reference * (1 + tol):
        verdict = "regression"
    elif max(cand) < min(base) * (1 - tol):
        verdict = "improved"
    else:
        verdict = "same"
    return Change(case, figure, reference, value, tol, verdict)


def _repeat_spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


def _time(case: str, figure: str, base: list[dict[str, Any]], cand: list[dict[str, Any]],
          floor: float) -> Change:
    p10, p90 = figure.replace("_p50", "_p10"), figure.replace("_p50", "_p90")
    within = [(r[p90] - r[p10]) / r[figure] for r in base + cand if r[figure]]
    between = [_repeat_spread([r[figure] for r in side]) for side in (base, cand)]
    tol = max(floor, TIME_SPREAD_FACTOR * max(within + between, default=0.0))
    reference = statistics.median(r[figure] for r in base)
    value = statistics.median(r[figure] for r in cand)
    verdict = "regression" if value > reference * (1 + tol) else (
        "improved" if value < reference * (1 - tol) else "same")
    return Change(case, figure, reference, value, tol, verdict)


def compare_case(case: str, base: list[dict[str, Any]], cand: list[dict[str, Any]],
                 time_floor: float = TIME_REL_FLOOR) -> list[Change]:
    base_ok = [r for r in base if r["status"] == "ok"]
    cand_ok = [r for r in cand if r["status"] == "ok"]
    if not base_ok:
        return [Change(case, "status", None, None, 0.0, "new" if cand_ok else "same")]
    if not cand_ok:
        return [Change(case, "status", None, None, 0.0, "missing" if not cand else "failed")]
    changes = []
    generate = base_ok[0].get("workload") == "generate"
    for figure in MEMORY_FIGURES + (GENERATE_FIGURES if generate else ()):
        b = [r[figure] for r in base_ok if r.get(figure) is not None]
        c = [r[figure] for r in cand_ok if r.get(figure) is not None]
        if b and c:
            changes.append(_memory(case, figure, b, c))
    for figure in GENERATE_TIME_FIGURES if generate else TIME_FIGURES:
        if all(r.get(figure) is not None for r in base_ok + cand_ok):  # one new token: no decode step to time
            changes.append(_time(case, figure, base_ok, cand_ok, time_floor))
    return changes


def compare(rows: list[dict[str, Any]], baseline: str | None = None, candidate: str | None = None,
            time_floor: float = TIME_REL_FLOOR) -> tuple[str, str, list[Change]]:
    """Compare the candidate commit's records (default: the newest commit) with the baseline's (default:
    the commit stored before it).  Returns (baseline, candidate, changes).  An `interrupted` record (Ctrl-C,
    SIGTERM) says nothing of the code, so the gate passes over it: a case with nothing else is `missing`."""
    rows = [row for row in rows if row.get("status") != INTERRUPTED]
    known = commits(rows)
    if not known:
        raise SpecError("store", "holds no records to compare")
    cand = resolve(candidate, known) if candidate else known[-1]
    if baseline:
        base = resolve(baseline, known)
    else:
        earlier = [c for c in known if c != cand]
        if not earlier:
            raise SpecError("baseline", f"the store holds only commit {cand}; nothing to compare it with")
        base = earlier[-1]
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: {"base": [], "cand": []})
    labels: dict[tuple[Any, ...], str] = {}
    for row in rows:
        side = {base: "base", cand: "cand"}.get(row.get("git_commit") or "unknown")
        if side:
            key = case_key(row)
            groups[key][side].append(row)
            labels.setdefault(key, case_label(row))
    changes = [c for key in sorted(groups, key=lambda k: labels[k])
               for c in compare_case(labels[key], groups[key]["base"], groups[key]["cand"], time_floor)]
    return base, cand, changes


def regressed(changes: list[Change]) -> bool:
    return any(c.verdict in ("regression", "failed") for c in changes)
