"""One case run as a subprocess under its timeout, its result as one JSON file, and the summary table."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from gpu_check.budget import Result
from gpu_check.cases import ROOT, Case, run_command

GIB = 2**30
KILL_GRACE_S = 10


def _stop(proc: subprocess.Popen[str]) -> None:
    """The case's whole process group (torchrun, its ranks, the simulation): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=KILL_GRACE_S)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def execute(command: list[str], timeout_s: float) -> tuple[str | None, str, str, float]:
    """(None or 'killed-timeout', stdout, stderr, wall s) of `command` run from the checkout."""
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
        killed = None
    except subprocess.TimeoutExpired:
        _stop(proc)
        out, err = proc.communicate()
        killed = "killed-timeout"
    except KeyboardInterrupt:
        _stop(proc)
        raise
    return killed, out, err, round(time.monotonic() - started, 1)


def last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            found = json.loads(line)
        except ValueError:
            continue
        return found if isinstance(found, dict) else None
    return None


def relative(figure: Any, measured: Any) -> float | None:
    return float(figure) / float(measured) - 1.0 if figure is not None and measured else None


def figures_of_run(row: dict[str, Any]) -> dict[str, Any]:
    """A `spacetime run --json` record, as measured / estimate / simulate / errors against measured."""
    peak = row.get("peak_bytes")
    measured = {key: row.get(key) for key in ("peak_bytes", "reserved_peak_bytes", "device_used_bytes",
                                              "step_s_p50", "step_s_p10", "step_s_p90", "tokens_per_s", "mfu",
                                              "trainable_params", "optimizer_class", "loss")}
    return {"measured": measured,
            "estimate": {"peak_bytes": row.get("predicted_peak_bytes")},
            "simulate": {"peak_bytes": row.get("simulated_peak_bytes"), "error": row.get("simulate_error")},
            "errors": {"estimate_vs_measured": relative(row.get("predicted_peak_bytes"), peak),
                       "simulate_vs_measured": relative(row.get("simulated_peak_bytes"), peak)}}


def figures_of_context(found: dict[str, Any]) -> dict[str, Any]:
    return {"measured": found, "estimate": {"context_bytes": found.get("estimate_context_bytes")},
            "simulate": {"peak_bytes": None, "error": "simulate adds estimate's context figure"},
            "errors": {"estimate_vs_measured": found.get("estimate_error"), "simulate_vs_measured": None}}


def run_case(case: Case, timeout_s: float, store: str) -> Result:
    """Run one case; its result, whatever happened (a case never raises but for Ctrl-C)."""
    command = run_command(case, store, timeout_s)
    killed, out, err, wall_s = execute(command, timeout_s)
    found = last_json(out)
    result: Result = {"case": case.name, "why": case.why, "command": shlex.join(command),
                      "expected_s": case.expected_s, "timeout_s": round(timeout_s, 1), "wall_s": wall_s}
    if killed or found is None:
        status = killed or "no-record"
        return {**result, "status": status, "stderr_tail": err.strip()[-2000:]}
    if case.is_context:
        return {**result, "status": "ok", **figures_of_context(found)}
    tail = err.strip()[-2000:] if found.get("status") != "ok" else ""
    return {**result, "status": found.get("status"), "error": found.get("error"), **figures_of_run(found),
            "record": found, **({"stderr_tail": tail} if tail else {})}


def write_result(out: Path, machine: dict[str, Any], case: Case, result: Result) -> None:
    """`out/<case>.json`, written whole (a temporary file renamed into place)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{case.name}.json.tmp"
    tmp.write_text(json.dumps({**result, "machine": machine}, indent=2, default=str) + "\n")
    tmp.replace(out / f"{case.name}.json")


def _cell(value: Any, form: str) -> str:
    if value is None:
        return "-"
    if form == "gib":
        return f"{value / GIB:.2f}"
    if form == "pct":
        return f"{value:+.2%}"
    return format(value, form)


def summary(results: list[Result]) -> str:
    """One line per case: status, wall time, measured peaks, step time, MFU, estimate's and simulate's errors."""
    head = ("case", "status", "wall s", "alloc GiB", "resv GiB", "step s", "MFU", "est err", "sim err")
    rows = [head]
    for r in results:
        m, e = r.get("measured") or {}, r.get("errors") or {}
        peak = m.get("peak_bytes", m.get("context_bytes"))
        rows.append((r["case"], str(r["status"]), _cell(r.get("wall_s"), ".0f"), _cell(peak, "gib"),
                     _cell(m.get("reserved_peak_bytes"), "gib"), _cell(m.get("step_s_p50"), ".3f"),
                     _cell(m.get("mfu"), ".1%"), _cell(e.get("estimate_vs_measured"), "pct"),
                     _cell(e.get("simulate_vs_measured"), "pct")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


ACCURACY_HEAD = ("case", "measured peak GiB", "reserved GiB", "estimate GiB", "estimate error", "simulate GiB",
                 "simulate error", "step s", "MFU")


def _md(value: Any, form: str) -> str:
    return "–" if value is None else _cell(value, form)


def accuracy_row(result: Result) -> str:
    """One row of docs/cuda.md's CUDA accuracy table; a case that measured nothing shows its status."""
    m, e = result.get("measured") or {}, result.get("errors") or {}
    est, sim = result.get("estimate") or {}, result.get("simulate") or {}
    peak = m.get("peak_bytes", m.get("context_bytes"))
    first = _md(peak, "gib") if result.get("status") == "ok" else str(result.get("status"))
    cells = (f"`{result['case']}`", first, _md(m.get("reserved_peak_bytes"), "gib"),
             _md(est.get("peak_bytes", est.get("context_bytes")), "gib"), _md(e.get("estimate_vs_measured"), "pct"),
             _md(sim.get("peak_bytes"), "gib"), _md(e.get("simulate_vs_measured"), "pct"),
             _md(m.get("step_s_p50"), ".3f"), _md(m.get("mfu"), ".1%"))
    return "| " + " | ".join(cells) + " |"


def accuracy_table(results: list[Result]) -> str:
    """The markdown table docs/cuda.md shows, from a results folder's case files."""
    return "\n".join(["| " + " | ".join(ACCURACY_HEAD) + " |", "|---|" + "---:|" * (len(ACCURACY_HEAD) - 1),
                      *(accuracy_row(r) for r in results)])
