"""A run's processes: start torchrun so that it dies with the launcher, kill the whole run, and the ranks'
side of the same promise (no rank outlives the launcher).

How nothing is left behind, whatever dies (Linux):
- torchrun is started with PR_SET_PDEATHSIG = SIGKILL (prctl, in the child before exec): the kernel kills it
  the moment the launcher dies, SIGKILL included, with nothing to run in the launcher.  The signal fires when
  the *thread* that started torchrun ends; that thread waits on torchrun for as long as it runs, so the two
  end together.  It reaches direct children only, and torchrun's ranks are its children, so:
- each rank runs a watchdog thread (`watch_launcher`) that SIGKILLs the rank once the launcher is gone (its
  pid is checked against its start time in /proc, so a reused pid does not count as alive) or once the rank's
  parent (torchrun) changes.  A parent-death signal in the rank itself would depend on which torchrun thread
  started it; the watchdog depends on nothing torchrun does.  Gloo's collectives and torch's kernels release
  the GIL, so the watchdog runs while a rank waits in a collective or computes.  It polls (two reads of /proc
  a second) rather than waiting on a pidfd, which kernels before 5.3 lack.  The rank that finds its launcher
  gone also removes the run's temporary folder, which the launcher can no longer do;
- every process of a run carries the run's tag in its environment ($SPACETIME_RUN), so the launcher kills
  the run (timeout, Ctrl-C, SIGTERM) by its tree *and* by its tag: a rank that torchrun left to init is
  still found.
- a rank killed or crashed: torchrun notices within its monitor interval (0.1 s) and stops the others.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from harness.core.record import Record

LAUNCHER_ENV = "SPACETIME_LAUNCHER"  # "pid:start time" of the launcher, for the ranks' watchdog
RUN_ENV = "SPACETIME_RUN"  # a tag unique to one run, inherited by torchrun and every rank
RUN_DIR_ENV = "SPACETIME_RUN_DIR"  # the run's temporary folder, removed by a rank whose launcher is gone
RUN_DIR_PREFIX = "spacetime-"
WATCH_INTERVAL_S = 0.5
GONE_WAIT_S = 5.0
_PR_SET_PDEATHSIG = 1


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM while measuring.  A KeyboardInterrupt, so every caller stops as it does on
    Ctrl-C; `record` (status `interrupted`) is the run that was measuring, for the caller to store."""

    def __init__(self, signum: int, record: Record | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.record = record


def stop_signal(stop: BaseException) -> int:
    """The signal behind a KeyboardInterrupt: SIGINT unless it is an Interrupted that says otherwise."""
    return stop.signum if isinstance(stop, Interrupted) else int(signal.SIGINT)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, a scheduler's stop) unwinds the main thread as Ctrl-C does."""
    def raise_interrupted(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """A second Ctrl-C or SIGTERM while a run is being killed, after the first, changes nothing (main
    thread only: signal handlers belong to it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), which tells a process from a later one given
    the same pid; None when there is no such process (or only its zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def run_env(run_dir: Path) -> dict[str, str]:
    """What a launch adds to torchrun's environment: the launcher, a fresh tag, the temporary folder."""
    me = os.getpid()
    return {LAUNCHER_ENV: f"{me}:{start_time(me)}", RUN_ENV: uuid.uuid4().hex, RUN_DIR_ENV: str(run_dir)}


# prctl is looked up here, in the launcher: between fork and exec the child only calls it (a preexec_fn must do
# little, the launcher having other threads: rich's progress bar)
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with(parent: int) -> Callable[[], None]:
    prctl = _libc.prctl

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return in_child


def spawn(cmd: list[str], sink: IO[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start torchrun in a session of its own (Ctrl-C at the terminal reaches the launcher only, which
    then stops the run) that the kernel kills when the launcher dies."""
    return subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            preexec_fn=_die_with(os.getpid()))


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
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


def tagged(tag: str) -> list[int]:
    """Every live process whose environment holds RUN_ENV=tag."""
    needle = f"{RUN_ENV}={tag}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0") and start_time(int(environ.parent.name)):
                found.append(int(environ.parent.name))
        except (OSError, ValueError):
            continue  # exited while we looked, or not ours to read
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kill_run(proc: subprocess.Popen[bytes], tag: str) -> None:
    """SIGKILL torchrun, its process group and every process of the run, and wait until none is left (at
    most GONE_WAIT_S: a process stuck in the kernel cannot be hurried)."""
    tree = descendants(proc.pid)  # before torchrun dies: then its ranks belong to init
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _kill([proc.pid, *tree, *tagged(tag)])
    proc.wait()
    deadline = time.monotonic() + GONE_WAIT_S
    while (left := tagged(tag)) and time.monotonic() < deadline:
        _kill(left)
        time.sleep(0.05)


def _launcher() -> tuple[int, int] | None:
    text = os.environ.get(LAUNCHER_ENV, "")
    pid, _, start = text.partition(":")
    return (int(pid), int(start)) if pid.isdigit() and start.isdigit() else None


def _orphaned(launcher: tuple[int, int] | None, parent: int) -> str | None:
    """Why this rank should not live on: its launcher or its parent is gone; None while both are there."""
    if launcher is not None and start_time(launcher[0]) != launcher[1]:
        return "launcher"
    return "parent" if os.getppid() != parent else None


def run_dir() -> tempfile.TemporaryDirectory[str]:
    """A run's temporary folder, named for its launcher (`spacetime-run-PID-...`), once the folders of launchers
    that are gone have been removed: a launcher killed with SIGKILL before any rank (whose watchdog removes
    the folder) had started leaves its folder behind, and the next run on the host takes it away."""
    remove_orphaned_run_dirs()
    return tempfile.TemporaryDirectory(prefix=f"{RUN_DIR_PREFIX}run-{os.getpid()}-", ignore_cleanup_errors=True)


def remove_orphaned_run_dirs(where: Path | None = None) -> list[Path]:
    """Remove the run folders under `where` (the temporary folder) whose launcher is no longer alive."""
    removed = []
    for folder in Path(where or tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}run-*-*"):
        pid = folder.name[len(RUN_DIR_PREFIX) + len("run-"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)  # another user's stays: not ours to remove
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_run_dir() -> None:
    folder = Path(os.environ.get(RUN_DIR_ENV, ""))
    if folder.name.startswith(RUN_DIR_PREFIX) and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


def _watch(launcher: tuple[int, int] | None, parent: int) -> None:
    while (why := _orphaned(launcher, parent)) is None:
        time.sleep(WATCH_INTERVAL_S)
    if why == "launcher":
        _remove_run_dir()
    os.kill(os.getpid(), signal.SIGKILL)


def watch_launcher() -> None:
    """In a rank: a daemon thread that SIGKILLs this process within WATCH_INTERVAL_S of its launcher
    ($SPACETIME_LAUNCHER) or its parent (torchrun) going away."""
    launcher, parent = _launcher(), os.getppid()
    threading.Thread(target=_watch, args=(launcher, parent), name="spacetime-watchdog", daemon=True).start()
