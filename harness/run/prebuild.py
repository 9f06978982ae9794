"""The builds before launch (the CPU allocation counter, a strategy's one-off host work such as DeepSpeed's C++
ops), in a child process under the run's --timeout.

The launcher starts `python -m harness.run.build_child --spec JSON --out FILE` and waits for it at most the time
the run may take; what is left is the run's.  A build that does not finish in time (a first compile on a slow
host, a build lock that a live process holds forever) is killed with everything it started (its session,
its tree and every process carrying its tag: ninja, the compilers), and the run ends as a Record with status
`timeout` whose message names the build, its folder and the lock's holder.  The child names each build as it
starts it (harness/train/ext_builds.py `prepare_build`, through $SPACETIME_BUILD_STATUS), which is also the
progress line.  The environment the builds set for the ranks ($SPACETIME_COUNTING_ALLOCATOR, DS_ACCELERATOR)
comes back in the child's result and is set in the launcher, whose children inherit it.  Builds run in this
environment's own extension folder (`extensions_env()`), which the ranks are given too.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from harness.core.host import PROJECT_ROOT
from harness.core.progress import current
from harness.core.record import INTERRUPTED, Record
from harness.core.spec import RunSpec
from harness.run.processes import RUN_ENV, Interrupted, kill_run, run_dir, signals_ignored, spawn, stop_signal
from harness.run.records import failed_record
from harness.train.cpu_allocator import LIBRARY_ENV
from harness.train.ext_builds import LOCK, STATUS_ENV, describe_holders, extensions_env, extensions_root
from strategies import get_strategy
from strategies.base import Strategy

POLL_S = 0.2
NOTE = "spacetime: "  # a line of the child's output that the launcher passes on to its own stderr
_PREPARED: set[tuple[str, ...]] = set()  # the host work this launcher has done (`_host_key`)


def _host_key(spec: RunSpec) -> tuple[str, ...]:
    """What a strategy's host work depends on: which ops DeepSpeed builds follows from the strategy, the device
    and the optimizer (the dtype for good measure), and where they are built."""
    return spec.strategy, spec.device, spec.optimizer, spec.dtype, str(extensions_root())


def needed(spec: RunSpec) -> bool:
    """Whether `spec` has anything to build: the allocation counter on a CPU, or a strategy with host work of its
    own, unless this process has done it already (a sweep's later rows skip the child and its imports)."""
    library = os.environ.get(LIBRARY_ENV)
    if spec.device == "cpu" and not (library and Path(library).is_file()):
        return True
    host_work = type(get_strategy(spec.strategy)).prepare_host is not Strategy.prepare_host
    return host_work and _host_key(spec) not in _PREPARED


def prebuild(spec: RunSpec, limit_s: float) -> Record | None:
    """Run the builds `spec` needs within `limit_s` seconds; None when they are done, else the run's Record
    (`timeout` or `error`).  Ctrl-C or SIGTERM kills the build and raises Interrupted with the run's record."""
    if not needed(spec):
        return None
    start = time.perf_counter()
    with run_dir() as tmp:
        status, out, log = Path(tmp) / "status.json", Path(tmp) / "result.json", Path(tmp) / "output.log"
        env = {**os.environ, **extensions_env(), RUN_ENV: uuid.uuid4().hex, STATUS_ENV: str(status)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, "-m", "harness.run.build_child", "--spec", spec.to_json(), "--out", str(out)]
        current().show(f"build: preparing {spec.strategy} on this host (one-off builds, compiled once)")
        try:
            returncode = _wait(cmd, env, log, status, limit_s)
        except Interrupted as stop:
            wall = time.perf_counter() - start
            what = _building(status).get("what", "the builds before launch")
            stop.record = failed_record(spec, INTERRUPTED, f"interrupted by {stop.args[0]} after {wall:.1f} s "
                                        f"while building {what}; the build was killed", wall)
            raise
        wall = time.perf_counter() - start
        if returncode is None:
            return failed_record(spec, "timeout", _timed_out(spec, _building(status), limit_s), wall)
        result: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
        if returncode != 0 or "env" not in result:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            return failed_record(spec, "error", result.get("error") or f"the builds before launch exited with "
                                 f"{returncode}\n{tail}", wall)
        os.environ.update(result["env"])  # for torchrun and its ranks
        _PREPARED.add(_host_key(spec))
        return None


def _wait(cmd: list[str], env: dict[str, str], log: Path, status: Path, limit_s: float) -> int | None:
    """Run the build child with output to `log`, passing its notes on and showing each build it names;
    None when it ran past `limit_s` (then it is killed, with all it started)."""
    deadline, shown, seen = time.monotonic() + limit_s, "", 0
    with log.open("w") as sink:
        proc = spawn(cmd, sink, env)
        try:
            while (returncode := proc.poll()) is None:
                if time.monotonic() >= deadline:
                    kill_run(proc, env[RUN_ENV])
                    return None
                what = _building(status).get("what", "")
                if what and what != shown:
                    current().show(f"build: {what} (compiled once, then loaded)")
                    shown = what
                seen = _pass_notes(log, seen)
                time.sleep(POLL_S)
        except KeyboardInterrupt as stop:
            with signals_ignored():
                kill_run(proc, env[RUN_ENV])
            raise Interrupted(stop_signal(stop)) from None
        if returncode != 0:  # anything the build started goes too
            kill_run(proc, env[RUN_ENV])
    _pass_notes(log, seen)
    return returncode


def _pass_notes(log: Path, seen: int) -> int:
    """Print the child's notes (lines starting NOTE) after the first `seen` bytes; the bytes read so far."""
    with log.open("rb") as f:
        f.seek(seen)
        text = f.read()
    complete = text[: text.rfind(b"\n") + 1]
    for line in complete.decode(errors="replace").splitlines():
        if line.startswith(NOTE):
            if current().enabled:
                current().note(line)
            else:
                print(line, file=sys.stderr, flush=True)
    return seen + len(complete)


def _building(status: Path) -> dict[str, str]:
    """The build the child named last: {"what", "folder"}; empty before the first."""
    try:
        found: dict[str, str] = json.loads(status.read_text())
        return found
    except (OSError, ValueError):
        return {}


def _timed_out(spec: RunSpec, building: dict[str, str], limit_s: float) -> str:
    what = f"building {building['what']}" if "what" in building else f"the builds before launch ({spec.strategy})"
    why = f"{what} did not finish within {limit_s:.0f} s of --timeout {spec.timeout_s:g} s; it was killed"
    if "folder" in building:
        lock = Path(building["folder"]) / LOCK
        holders = describe_holders(lock) if lock.exists() else ""
        why += f"\nbuild folder {building['folder']}"
        why += f"; its build lock is held by {holders}" if holders else ""
    return why + ("\na first build can take minutes on a small host: give --timeout room for it once; "
                  "a build lock held by a live process is that process's build, not a stale lock")
