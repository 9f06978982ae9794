"""`ci/gpu-check --dry-run`: every case's command checked by the command itself (`spacetime run ... --dry-run`
validates the spec for a CUDA host and launches nothing; the context probe parses and plans), and the plan
printed with its expected times."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from gpu_check.cases import ROOT, Case, run_command

KNOB_DEFAULTS = {"activation_checkpointing": "off", "lora_rank": 0, "quant": "none"}  # shown when moved
PARSED = ("parsed", "unsupported-here")  # unsupported-here: valid, but a package this host lacks is needed
DRY_RUNS = Path(__file__).with_name("dry_runs.py")


def _planned(case: Case, store: str) -> dict[str, Any]:
    return {"case": case.name, "command": shlex.join(run_command(case, store, case.timeout_s)),
            "expected_s": case.expected_s, "timeout_s": case.timeout_s}


def judge(case: Case, planned: dict[str, Any], code: int, out: str, err: str) -> dict[str, Any]:
    """{case, command, check, detail}: whether the case's command accepted what the case passes it."""
    lines = err.strip().splitlines()
    if code == 1 and lines and lines[-1].startswith("spacetime: unsupported:"):
        return {**planned, "check": "unsupported-here", "detail": lines[-1]}
    if code != 0:
        return {**planned, "check": "failed", "detail": (lines or ["no output"])[-1]}
    try:
        shown = json.loads(out)
    except ValueError:
        return {**planned, "check": "failed", "detail": "the dry run printed no JSON"}
    return {**planned, **_compare(case, shown)}


def _execute(command: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, input=stdin)
    except subprocess.TimeoutExpired:
        return 124, "", "the dry run took over 300 s"
    return done.returncode, done.stdout, done.stderr


def _compare(case: Case, shown: dict[str, Any]) -> dict[str, str]:
    """The spec the dry run validated must be the case's (model, strategy, device)."""
    if case.is_context:
        return {"check": "parsed", "detail": f"steps {', '.join(shown.get('planned', []))}"}
    spec = shown.get("spec", {})
    flags = dict(zip(case.flags[::2], case.flags[1::2], strict=True))
    wanted = {"model": flags.get("--model"), "strategy": flags.get("--strategy"), "device": "cuda"}
    wrong = {k: spec.get(k) for k, v in wanted.items() if spec.get(k) != v}
    if wrong:
        return {"check": "failed", "detail": f"validated a different spec: {wrong}"}
    knobs = [f"{k}={spec[k]}" for k, default in KNOB_DEFAULTS.items() if spec.get(k, default) != default]
    return {"check": "parsed", "detail": f"{spec['model']} {spec['strategy']} x{spec['nproc']} batch "
                                         f"{spec['batch_size']} x {spec['seq_len']} {spec['dtype']} "
                                         f"{spec['optimizer']} {' '.join(knobs)}".rstrip()}


def check_plan(cases: tuple[Case, ...], store: str) -> list[dict[str, Any]]:
    """Every case's check, in the cases' order: each `spacetime run ... --dry-run` through the command's own
    entry point, all in one process (dry_runs.py), and the context probe's --dry-run."""
    runs = [case for case in cases if not case.is_context]
    argvs = [run_command(case, store, case.timeout_s, dry_run=True)[3:] for case in runs]  # after `-m harness.cli`
    code, out, err = _execute([sys.executable, str(DRY_RUNS)], json.dumps(argvs))
    answers = json.loads(out) if code == 0 else [{"code": code, "out": "", "err": err}] * len(runs)
    by_name = {case.name: judge(case, _planned(case, store), a["code"], a["out"], a["err"])
               for case, a in zip(runs, answers, strict=True)}
    for case in cases:
        if case.is_context:
            by_name[case.name] = judge(case, _planned(case, store),
                                       *_execute(run_command(case, store, case.timeout_s, dry_run=True)))
    return [by_name[case.name] for case in cases]


def plan_table(checked: list[dict[str, Any]]) -> str:
    rows = [("#", "case", "expected s", "timeout s", "check", "detail")]
    for i, c in enumerate(checked, 1):
        rows.append((str(i), c["case"], f"{c['expected_s']:.0f}", f"{c['timeout_s']:.0f}", c["check"],
                     c["detail"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
