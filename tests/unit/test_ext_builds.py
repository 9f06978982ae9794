"""The extension folder is keyed by Python, torch and the environment; a build lock whose owner is gone is
removed, one a live process holds is kept; a build held up past its limit is killed and named."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.core.spec import RunSpec
from harness.run import prebuild
from harness.run.processes import GONE_WAIT_S
from harness.train import ext_builds
from harness.train.cpu_allocator import LIBRARY_ENV, cached_source
from harness.train.ext_builds import (
    EXTENSIONS_ENV,
    LOCK,
    STATUS_ENV,
    clear_stale_lock,
    describe_holders,
    extensions_root,
    folder_key,
    lock_holders,
    prepare_build,
)

HOLD = "import os, sys, time; os.open(sys.argv[1], os.O_CREAT | os.O_EXCL); print('held', flush=True); time.sleep(600)"


@pytest.fixture
def hold() -> Iterator[Callable[[Path], int]]:
    """Make a build lock that a live process holds open, as torch's FileBaton does while it builds; its pid."""
    holders: list[subprocess.Popen[str]] = []

    def start(lock: Path) -> int:
        lock.parent.mkdir(parents=True, exist_ok=True)
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        return holder.pid

    yield start
    for holder in holders:
        holder.kill()
        holder.wait()


def stale_lock(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    lock.touch()
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    return lock


def test_the_folder_is_keyed_under_the_users_extensions_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXTENSIONS_ENV, str(tmp_path / "mine"))
    key = folder_key()
    assert extensions_root() == tmp_path / "mine" / key
    monkeypatch.setenv(EXTENSIONS_ENV, str(tmp_path / "mine" / key))  # as a launcher hands it to its children
    assert extensions_root() == tmp_path / "mine" / key
    monkeypatch.delenv(EXTENSIONS_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert extensions_root() == tmp_path / "cache" / "torch_extensions" / key


def test_the_key_names_python_and_torch_and_tells_environments_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    key = folder_key()
    python = f"py{sys.version_info.major}.{sys.version_info.minor}"
    assert key.startswith(f"spacetime-{python}-torch{importlib.metadata.version('torch')}-")
    monkeypatch.setattr(sys, "prefix", sys.prefix + "-another-venv")
    assert folder_key() != key and folder_key().rsplit("-", 1)[0] == key.rsplit("-", 1)[0]


def test_the_allocators_source_copy_lives_in_the_keyed_folder(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXTENSIONS_ENV, str(tmp_path))
    _, copy = cached_source()
    assert copy.parent == tmp_path / folder_key() / "spacetime-sources"


def test_a_lock_nobody_holds_is_removed_with_a_line_on_stderr(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    lock = stale_lock(tmp_path / "op")
    assert clear_stale_lock(lock.parent)
    assert not lock.exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"removed a stale build lock {lock}" in err


def test_a_young_lock_nobody_holds_is_removed_once_old_enough(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ext_builds, "STALE_AFTER_S", 0.5)
    lock = tmp_path / LOCK
    lock.touch()
    assert clear_stale_lock(tmp_path) and not lock.exists()


def test_a_lock_a_live_process_holds_is_kept(tmp_path: Path, hold: Callable[[Path], int],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "op" / LOCK
    pid = hold(lock)
    os.utime(lock, (time.time() - 3600,) * 2)  # however old
    assert lock_holders(lock) == [pid]
    assert f"pid {pid} (" in describe_holders(lock)
    assert not clear_stale_lock(lock.parent)
    assert lock.exists() and capsys.readouterr().err == ""


def test_prepare_build_names_the_build_and_clears_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXTENSIONS_ENV, str(tmp_path))
    monkeypatch.setenv(STATUS_ENV, str(tmp_path / "status.json"))
    lock = stale_lock(tmp_path / folder_key() / "some_op")
    folder = prepare_build("some_op", "the op")
    assert folder == lock.parent and not lock.exists()
    assert json.loads((tmp_path / "status.json").read_text()) == {"what": "the op", "folder": str(folder)}


def test_a_build_held_up_past_its_limit_is_killed_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             hold: Callable[[Path], int]) -> None:
    """The allocation counter's build waits on a lock a live process holds; the launcher's limit ends it."""
    monkeypatch.setenv(EXTENSIONS_ENV, str(tmp_path / "extensions"))
    monkeypatch.delenv(LIBRARY_ENV, raising=False)
    name, _ = cached_source()
    folder = extensions_root() / name
    pid = hold(folder / LOCK)
    record = prebuild.prebuild(RunSpec(model="tiny", strategy="single", device="cpu", timeout_s=5), 5)
    assert record is not None and record.status == "timeout", record
    assert record.error is not None and f"building the CPU allocation counter ({name}) did not finish" in record.error
    assert f"held by pid {pid}" in record.error and record.wall_s is not None
    assert 5 <= record.wall_s < 5 + prebuild.POLL_S + GONE_WAIT_S + 1  # the limit, then the kill
    assert (folder / LOCK).exists()  # a live holder's lock is not taken for stale
    assert [p for p in _environments_naming(str(tmp_path / "extensions")) if p != pid] == []  # the build's gone


def _environments_naming(text: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if text.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except (OSError, ValueError):
            continue
    return found
