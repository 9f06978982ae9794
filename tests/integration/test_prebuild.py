"""The builds before launch count against --timeout: a stale DeepSpeed build lock is removed and the run
finishes; a build lock held by a live process ends the run as a `timeout` that names the build, with nothing
left running.

Each test builds into a folder of its own, seeded with a copy of this environment's built ops (the first
build, minutes on a 2-core host, happens once in the default folder and is kept there).  The allocation
counter comes from the default folder ($SPACETIME_COUNTING_ALLOCATOR), so the run's builds are DeepSpeed's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.run.prebuild import POLL_S, needed, prebuild
from harness.run.processes import GONE_WAIT_S
from harness.run.validate import validate
from harness.train.cpu_allocator import LIBRARY_ENV
from harness.train.ext_builds import EXTENSIONS_ENV, LOCK, extensions_root, folder_key
from tests.helpers import QUICK, needs

OP = "deepspeed_shm_comm"  # the op ZeRO needs on a CPU (DeepSpeed's shared-memory all-reduce)
OP_NAME = f"DeepSpeed op ShareMemCommBuilder ({OP})"


@dataclass
class Extensions:
    base: Path  # what the run's $TORCH_EXTENSIONS_DIR says
    env: dict[str, str]

    @property
    def lock(self) -> Path:
        return self.base / folder_key() / OP / LOCK


@pytest.fixture(scope="module")
def built() -> Path:
    """This environment's extension folder with zero3's ops built (once: minutes the first time)."""
    spec = validate(QUICK.with_(strategy="zero3", nproc=2, timeout_s=1800))
    assert prebuild(spec, spec.timeout_s) is None
    return extensions_root()


@pytest.fixture
def extensions(built: Path, tmp_path: Path) -> Extensions:
    base = tmp_path / "extensions"
    shutil.copytree(built, base / folder_key(), ignore=shutil.ignore_patterns(LOCK), symlinks=True)
    env = {**os.environ, EXTENSIONS_ENV: str(base), LIBRARY_ENV: os.environ[LIBRARY_ENV]}
    return Extensions(base, env)


def run_zero3(extensions: Extensions, timeout_s: int, store: Path,
              limit_s: float) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """`spacetime run --strategy zero3` on tiny; a hang past `limit_s` fails the test (TimeoutExpired)."""
    cmd = [sys.executable, "-m", "harness.cli", "run", "--strategy", "zero3", "--model", "tiny", "--nproc", "2",
           "--seq-len", "16", "--warmup", "1", "--memory-steps", "1", "--steps", "2", "--timeout", str(timeout_s),
           "--store", str(store), "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=extensions.env, timeout=limit_s)
    return json.loads(result.stdout.strip().splitlines()[-1]), result


def left_running(marker: str) -> list[int]:
    """Live processes whose environment mentions `marker`."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except (OSError, ValueError):
            continue
    return found


@needs("deepspeed")
def test_a_stale_build_lock_is_removed_and_the_run_finishes(extensions: Extensions, store_dir: Path) -> None:
    extensions.lock.touch()  # an interrupted build's lock: no process holds it
    an_hour_ago = time.time() - 3600
    os.utime(extensions.lock, (an_hour_ago, an_hour_ago))
    record, result = run_zero3(extensions, 60, store_dir, limit_s=90)
    assert record["status"] == "ok", record["error"]
    assert f"removed a stale build lock {extensions.lock}" in result.stderr
    assert not extensions.lock.exists()


HOLD = "import os, sys, time; os.open(sys.argv[1], os.O_CREAT | os.O_EXCL); print('held', flush=True); time.sleep(600)"


@needs("deepspeed")
def test_a_build_held_up_past_the_timeout_ends_as_a_timeout_naming_it(extensions: Extensions,
                                                                     store_dir: Path) -> None:
    """A lock a live process holds (its own build, as far as anyone can tell) is left alone; the build waits on
    it until --timeout, and is then killed with everything it started."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(extensions.lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        record, result = run_zero3(extensions, 15, store_dir, limit_s=60)
        assert holder.poll() is None and extensions.lock.exists()  # not taken for stale
    finally:
        holder.kill()
        holder.wait()
    assert record["status"] == "timeout", record["error"]
    assert f"building {OP_NAME} did not finish within 15 s of --timeout 15 s" in record["error"]
    assert f"held by pid {holder.pid}" in record["error"]
    assert 15 <= record["wall_s"] < 15 + POLL_S + GONE_WAIT_S + 1, record["wall_s"]  # the limit, then the kill
    assert "removed a stale build lock" not in result.stderr
    assert left_running(str(extensions.base)) == []


@needs("deepspeed")
def test_a_launcher_does_a_strategys_host_work_once(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep's later DeepSpeed rows skip the build child: the same ops in the same folder are done."""
    import harness.run.prebuild as prebuild_module

    spec = validate(QUICK.with_(strategy="zero3", nproc=2))
    other = prebuild_module._host_key(spec.with_(strategy="zero2_offload"))  # as if no earlier test had run it
    monkeypatch.setattr(prebuild_module, "_PREPARED", prebuild_module._PREPARED - {other})
    assert not needed(spec)
    assert needed(spec.with_(strategy="zero2_offload"))  # another op (DeepSpeed's CPU Adam) to build
