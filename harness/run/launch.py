"""Launch one measured run as its own `torch.distributed.run` subprocess, with a timeout.

Whatever happens (crash, OOM, hang, timeout) the caller gets a Record with a status, never an exception;
only Ctrl-C and SIGTERM stop the caller (Interrupted, a KeyboardInterrupt carrying the run's record).  How no
process outlives a run, whatever dies: harness/run/processes.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.core.host import PROJECT_ROOT
from harness.core.progress import current, following, phase_env
from harness.core.record import FOLLOWER, INTERRUPTED, Record
from harness.core.spec import RunSpec
from harness.run.nodes import NODE_RANK_ENV, Rendezvous
from harness.run.oom_kills import OomKills, after_run, read_oom_kills
from harness.run.prebuild import prebuild
from harness.run.processes import (
    RUN_ENV,
    Interrupted,
    kill_run,
    run_dir,
    run_env,
    signals_ignored,
    spawn,
    stop_signal,
)
from harness.run.records import failed_record, from_result
from harness.train.ext_builds import extensions_env

TAIL_LINES = 25
_OOM_MARKERS = ("OutOfMemoryError", "CUDA out of memory", "DefaultCPUAllocator: can't allocate memory",
                "DefaultCPUAllocator: not enough memory", "std::bad_alloc", "MemoryError")
_NOISE = ("USDT:", "Setting OMP_NUM_THREADS", "*****")


def torchrun_command(spec: RunSpec, out: Path, logs: Path, rdzv: Rendezvous | None = None) -> list[str]:
    """torchrun with each rank's stdout/stderr in its own file under `logs` (to find the root cause)."""
    if spec.nnodes > 1:
        if rdzv is None:
            raise ValueError("a run on several nodes needs a Rendezvous")
        hosts = [f"--nnodes={spec.nnodes}", f"--node-rank={rdzv.node_rank}", "--rdzv-backend=c10d",
                 f"--rdzv-endpoint={rdzv.endpoint}", f"--rdzv-id={rdzv.run_id}"]
    else:
        hosts = ["--standalone"]
    return [sys.executable, "-m", "torch.distributed.run", *hosts,
            f"--nproc-per-node={spec.nproc // spec.nnodes}", f"--log-dir={logs}", "--redirects=3",
            "-m", "harness.run.worker", "--spec", spec.to_json(), "--out", str(out)]


def _env(node_rank: int = 0) -> dict[str, str]:
    env = dict(os.environ)
    env[NODE_RANK_ENV] = str(node_rank)  # c10d numbers hosts in its own order; the worker on node 0 writes
    project_root = str(PROJECT_ROOT)  # workers import harness/strategies
    env["PYTHONPATH"] = os.pathsep.join(p for p in (project_root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _tail(text: str, n: int = TAIL_LINES) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(_NOISE)]
    return "\n".join(lines[-n:])


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}"


def _failures(output: str) -> list[tuple[int, int]]:
    """(rank, exit code) of each failed rank in torchrun's report, its "Root Cause" first."""
    head, _, root = output.partition("Root Cause")
    found = re.findall(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", root, re.DOTALL)
    found += re.findall(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", head.rpartition("Failures:")[2], re.DOTALL)
    return [(int(rank), int(code)) for rank, code in found] if root else []


def _root_cause(output: str) -> tuple[int, int] | None:
    """(rank, exit code) of the failure that brought the run down: a rank killed by a signal (torchrun's
    own SIGTERM aside) where there is one, for its peers then fail only *because* of it (torchrun's root
    cause is the earliest failure to the second, and a peer's "connection reset" can tie with it), else
    torchrun's root cause."""
    failures = _failures(output)
    killed = [f for f in failures if f[1] < 0 and f[1] != -signal.SIGTERM]
    return next(iter(killed or failures), None)


def error_report(returncode: int, output: str, logs: Path) -> tuple[str, str]:
    """(who failed and how, their last lines): the failing rank's own stderr (the rank found through
    torchrun's report), else the tail of torchrun's output."""
    cause = _root_cause(output)
    if cause is None:
        return ("torchrun " + _how(returncode) if returncode < 0 else ""), _tail(output)
    rank, code = cause
    logged = [p.read_text(errors="replace") for p in sorted(logs.glob(f"**/{rank}/stderr.log"))]
    return f"rank {rank} {_how(code)}", _tail("".join(logged[:1])) or _tail(output)  # a killed rank may say nothing


def classify(returncode: int, output: str, oom: OomKills | None = None) -> tuple[str, str]:
    """(status, why) of a run that produced no result.  `oom` when the output shows an allocation failure,
    or when a rank (or torchrun) died of SIGKILL *and* the kernel counted an OOM kill during the run (`oom`:
    the count before and after); any other SIGKILL is someone else's kill, so `error`."""
    marker = next((m for m in _OOM_MARKERS if m in output), None)
    if marker:
        return "oom", f"allocation failed ({marker})"
    cause = _root_cause(output)
    if returncode != -signal.SIGKILL and (cause is None or cause[1] != -signal.SIGKILL):
        return "error", ""
    evidence = (oom or OomKills(None)).describe()
    if oom is not None and oom.happened:
        return "oom", f"the OOM killer: {evidence}"
    return "error", f"not the OOM killer: {evidence}"


def _run(cmd: list[str], log: Path, timeout_s: float, env: dict[str, str]) -> int | None:
    """Run torchrun with output to `log`; None on timeout (the run killed).  Ctrl-C or SIGTERM kills the run
    at once and raises Interrupted."""
    tag = env[RUN_ENV]
    with log.open("w") as sink:
        proc = spawn(cmd, sink, env)
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_run(proc, tag)
            return None
        except KeyboardInterrupt as stop:
            with signals_ignored():
                kill_run(proc, tag)
            raise Interrupted(stop_signal(stop)) from None
        if returncode != 0:  # torchrun stopped its ranks; anything they started goes too
            kill_run(proc, tag)
        return returncode


def launch(spec: RunSpec, rdzv: Rendezvous | None = None) -> Record:
    """Run a validated spec; always returns a Record.  On a node other than 0 of a multi-node run the
    record's status is `follower` when this node's ranks finished: node 0 holds the figures.  Ctrl-C or
    SIGTERM kills the run and raises Interrupted with the run's record (status `interrupted`)."""
    start = time.perf_counter()
    built = prebuild(spec, spec.timeout_s)  # under the timeout, in a child it can kill: harness/run/prebuild.py
    if built is not None:
        return built
    left = spec.timeout_s - (time.perf_counter() - start)  # what the builds left of the timeout
    with run_dir() as tmp:
        out, log, logs = Path(tmp) / "result.json", Path(tmp) / "output.log", Path(tmp) / "ranks"
        node_rank = rdzv.node_rank if rdzv and spec.nnodes > 1 else 0
        oom = read_oom_kills()
        env = {**_env(node_rank), **extensions_env(), **run_env(Path(tmp)), **phase_env(Path(tmp))}
        current().show(f"launch: torchrun, starting {spec.nproc // spec.nnodes} rank(s)")
        try:
            with following(env):
                returncode = _run(torchrun_command(spec, out, logs, rdzv), log, left, env)
        except Interrupted as stop:
            wall = time.perf_counter() - start
            stop.record = failed_record(spec, INTERRUPTED, f"interrupted by {signal.Signals(stop.signum).name} "
                                        f"after {wall:.1f} s; torchrun and its ranks were killed", wall)
            raise
        wall = time.perf_counter() - start
        if returncode == 0 and node_rank > 0:
            return failed_record(spec, FOLLOWER, f"node {node_rank} of {spec.nnodes} finished; node 0 keeps the "
                          "record", wall)
        if returncode == 0 and out.exists():
            result: dict[str, Any] = json.loads(out.read_text())
            if "unsupported" in result:  # the strategy found out on the ranks (e.g. a wrapper swapped)
                return failed_record(spec, "unsupported", result["unsupported"], wall)
            return from_result(spec, result, wall)
        text = log.read_text(errors="replace")
        ranks_text = "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("**/stderr.log")))
        if returncode is None:
            last = _tail(ranks_text or text)
            return failed_record(spec, "timeout", f"no result after {spec.timeout_s:g} s\n{last}", wall)
        status, verdict = classify(returncode, text + ranks_text, after_run(oom))
        who, last = error_report(returncode, text, logs)
        head = "; ".join(part for part in (f"exit {returncode}", who, verdict) if part)
        return failed_record(spec, status, f"{head}\n{last}", wall)
