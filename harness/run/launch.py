"""Launch one measured run as its own `torch.distributed.run` subprocess, with a timeout.

Whatever happens (crash, OOM, hang, timeout) the caller gets a Record with a status, never an exception.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.core.host import PROJECT_ROOT
from harness.core.record import FOLLOWER, Record
from harness.core.spec import RunSpec
from harness.run.nodes import NODE_RANK_ENV, Rendezvous
from harness.run.records import failed_record, from_result
from harness.train.cpu_allocator import counting_allocator
from strategies import get_strategy

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


def error_report(output: str, logs: Path) -> str:
    """The failing rank's own last lines, found through torchrun's "Root Cause" block, else the tail of
    torchrun's output."""
    match = re.search(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(\S+)(?:.*?\((\w+)\))?", output,
                      re.DOTALL)
    if match:
        rank, code, signame = match.groups()
        for stderr in sorted(logs.glob(f"**/{rank}/stderr.log")):
            head = f"rank {rank} exited with {code}" + (f" ({signame})" if signame else "")
            return head + "\n" + _tail(stderr.read_text(errors="replace"))
    return _tail(output)


def classify(returncode: int, output: str) -> str:
    """Status of a run that produced no result: `oom` when the output shows an allocation failure or a
    SIGKILL (the kernel's OOM killer), else `error`."""
    if any(marker in output for marker in _OOM_MARKERS):
        return "oom"
    if returncode in (-signal.SIGKILL, 128 + signal.SIGKILL) or "Signal 9 (SIGKILL)" in output:
        return "oom"
    return "error"


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc): torchrun starts each rank in a session of its own, so
    killing torchrun's process group leaves the ranks running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _run(cmd: list[str], log: Path, timeout_s: float, node_rank: int = 0) -> int | None:
    """Run cmd in its own process group with output to `log`; None on timeout (torchrun and ranks killed)."""
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=_env(node_rank),
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            ranks = descendants(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in ranks:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
            return None


def launch(spec: RunSpec, rdzv: Rendezvous | None = None) -> Record:
    """Run a validated spec; always returns a Record.  On a node other than 0 of a multi-node run the
    record's status is `follower` when this node's ranks finished: node 0 holds the figures."""
    start = time.perf_counter()
    if spec.device == "cpu":  # build the CPU memory counter here, once, not in every rank under the timeout
        try:
            counting_allocator()
        except Exception as why:  # no compiler, no headers: a result, not a crashed sweep
            return failed_record(spec, "error", f"building the CPU allocation counter failed: {why}")
    try:
        get_strategy(spec.strategy).prepare_host(spec)
    except Exception as why:  # e.g. DeepSpeed's ops do not compile here
        return failed_record(spec, "error", f"preparing {spec.strategy} on this host failed: {why}")
    with tempfile.TemporaryDirectory(prefix="spacetime-") as tmp:
        out, log, logs = Path(tmp) / "result.json", Path(tmp) / "output.log", Path(tmp) / "ranks"
        node_rank = rdzv.node_rank if rdzv and spec.nnodes > 1 else 0
        returncode = _run(torchrun_command(spec, out, logs, rdzv), log, spec.timeout_s, node_rank)
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
        status = classify(returncode, text + ranks_text)
        return failed_record(spec, status, f"exit {returncode}; {error_report(text, logs)}", wall)
