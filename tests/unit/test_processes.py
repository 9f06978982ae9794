"""No process outlives its run, on plain processes (no torchrun): torchrun's stand-in dies with the process
that started it, SIGKILL included; a rank's watchdog kills the rank once its launcher is gone, even while the
rank is inside one long torch call; `kill_run` finds a run's processes by their tag outside the tree too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from harness.run.processes import LAUNCHER_ENV, RUN_DIR_ENV, RUN_ENV, kill_run, spawn, start_time, tagged

WITHIN_S = 5.0  # the watchdog looks every 0.5 s; the rest is room for a loaded machine


def _gone(pid: int, within: float = WITHIN_S) -> bool:
    deadline = time.monotonic() + within
    while start_time(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _end(pid: int, born: int | None) -> None:
    """Kill what a failing test would leave behind (the same process: its pid and start time)."""
    if born is not None and start_time(pid) == born:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True,
                            env=env)


def test_what_spawn_started_dies_when_its_starter_is_killed() -> None:
    starter = _python("""
        import subprocess, sys, time
        from harness.run.processes import spawn
        child = spawn([sys.executable, "-c", "import time; time.sleep(300)"], sys.stdout, {})
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    assert starter.stdout is not None
    child = int(starter.stdout.readline())
    born = start_time(child)
    try:
        assert born is not None
        starter.kill()  # SIGKILL: nothing runs in the starter
        starter.wait()
        assert _gone(child)
    finally:
        _end(child, born)


def test_a_rank_dies_when_its_launcher_goes_even_inside_one_long_torch_call(tmp_path: Path) -> None:
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    run_dir = tmp_path / "spacetime-run"
    (run_dir / "ranks").mkdir(parents=True)
    env = dict(os.environ, **{LAUNCHER_ENV: f"{launcher.pid}:{start_time(launcher.pid)}",
                              RUN_DIR_ENV: str(run_dir)})
    rank = _python("""
        import torch
        from harness.run.processes import watch_launcher
        watch_launcher()
        a = torch.rand(4096, 4096)
        print("computing", flush=True)
        torch.linalg.matrix_power(a, 2**62 - 1)  # 123 products of 4096^3 in one call: minutes on 2 cores
        print("finished", flush=True)
    """, env)
    try:
        assert rank.stdout is not None
        assert rank.stdout.readline() == "computing\n"
        time.sleep(1)  # inside matrix_power now
        launcher.kill()
        launcher.wait()
        assert rank.wait(timeout=WITHIN_S) == -signal.SIGKILL
        assert rank.stdout.read() == ""
        assert not run_dir.exists()  # the launcher cannot remove it any more: the rank did
    finally:
        rank.kill()
        launcher.kill()


def test_a_rank_whose_launcher_pid_now_names_another_process_dies_at_once(tmp_path: Path) -> None:
    me = os.getpid()
    start = start_time(me)
    assert start is not None
    env = dict(os.environ, **{LAUNCHER_ENV: f"{me}:{start + 1}",  # the pid lives on, with another start time
                              RUN_DIR_ENV: str(tmp_path / "not-a-run-folder")})
    (tmp_path / "not-a-run-folder").mkdir()
    rank = _python("""
        import time
        from harness.run.processes import watch_launcher
        watch_launcher()
        time.sleep(60)
    """, env)
    try:
        assert rank.wait(timeout=WITHIN_S) == -signal.SIGKILL
        assert (tmp_path / "not-a-run-folder").exists()  # only a folder named as a run's is removed
    finally:
        rank.kill()


def test_a_rank_dies_when_its_parent_goes() -> None:
    parent = _python("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
                                  "import time; from harness.run.processes import watch_launcher; "
                                  "watch_launcher(); time.sleep(300)"])
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    born = start_time(child)
    try:
        time.sleep(1)  # the watchdog has read its parent
        parent.kill()
        parent.wait()
        assert _gone(child)
    finally:
        _end(child, born)


def test_kill_run_kills_the_tree_and_every_tagged_process() -> None:
    tag = uuid.uuid4().hex
    env = dict(os.environ, **{RUN_ENV: tag})
    # torchrun's stand-in starts a process in a session of its own that leaves the tree (its parent exits)
    code = """
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
        subprocess.Popen([sys.executable, "-c", "import os, subprocess, sys, time; "
                          "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); os._exit(0)"])
        time.sleep(300)
    """
    with open(os.devnull, "w") as sink:
        proc = spawn([sys.executable, "-c", textwrap.dedent(code)], sink, env)
        deadline = time.monotonic() + 30
        while len(tagged(tag)) < 3 and time.monotonic() < deadline:  # the stand-in, its child, the orphan
            time.sleep(0.05)
        found = tagged(tag)
        born = {pid: start_time(pid) for pid in found}
        try:
            assert len(found) == 3
            kill_run(proc, tag)
            assert tagged(tag) == [] and all(start_time(pid) is None for pid in found)
        finally:
            for pid in found:
                _end(pid, born[pid])


def test_a_run_folder_whose_launcher_is_gone_is_removed_by_the_next_run(tmp_path: Path) -> None:
    from harness.run.processes import RUN_DIR_PREFIX, remove_orphaned_run_dirs

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no live process has (until it is reused)
    orphan = tmp_path / f"{RUN_DIR_PREFIX}run-{gone.pid}-ab12"
    live = tmp_path / f"{RUN_DIR_PREFIX}run-{os.getpid()}-cd34"
    unsaved = tmp_path / f"{RUN_DIR_PREFIX}unsaved-{gone.pid}"  # records the store refused: never removed
    for folder in (orphan, live, unsaved):
        (folder / "ranks").mkdir(parents=True)
        (folder / "ranks" / "stderr.log").write_text("x")
    assert remove_orphaned_run_dirs(tmp_path) == [orphan]
    assert not orphan.exists() and live.is_dir() and unsaved.is_dir()
