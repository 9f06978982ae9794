"""The store's faults on a real sweep: the disk fills while `tiny` runs are measuring.  The record finished
before is in the store, the later ones are kept in a store in the temporary folder and named, the sweep
measures every run, and its exit code says something failed.  The disk is a small tmpfs where this machine
lets a test mount one, else a stand-in (the store's writes fail with ENOSPC): the test id says which."""

from __future__ import annotations

import errno
import os
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.run import store
from tests.filesystems import can_mount, fill, inject, tmpfs
from tests.store_damage import record

SWEEP = ["sweep", "--preset", "smoke", "--models", "tiny", "--strategies", "single", "--repeat", "3",
         "--seq-len", "16", "--warmup", "1", "--memory-steps", "1", "--steps", "2"]  # three runs, seconds each


def _fill_after_first_record(folder: Path, full: threading.Event, make_full: object) -> threading.Thread:
    """A thread that fills the disk as soon as the sweep's first record is in `folder` (as another job
    would, writing to the same disk while the next run measures)."""
    def watch() -> None:
        earlier = set(folder.glob(store.RECORD_FILES))
        while not set(folder.glob(store.RECORD_FILES)) - earlier:
            time.sleep(0.02)
        make_full()  # type: ignore[operator]
        full.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("how", ["tmpfs-filled" if can_mount() else "injected-ENOSPC"])
def test_a_disk_that_fills_mid_sweep_loses_no_record_and_the_sweep_goes_on(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    full = threading.Event()
    with ExitStack() as stack:
        disk = stack.enter_context(tmpfs(tmp_path / "disk")) if how == "tmpfs-filled" else tmp_path / "disk"
        folder = disk / "store"
        store.append([record(0)], folder)  # a record from an earlier sweep
        make_full = (lambda: fill(disk)) if how == "tmpfs-filled" else (
            lambda: inject(monkeypatch, folder, errno.ENOSPC))
        watcher = _fill_after_first_record(folder, full, make_full)
        code = main([*SWEEP, "--store", str(folder)])
        watcher.join(timeout=5)
        stored = store.rows(folder)
    err = capsys.readouterr().err
    assert full.is_set() and code == 1 and "Traceback" not in err, err
    assert [r["peak_bytes"] for r in stored][0] == record(0).peak_bytes and len(stored) == 2  # earlier, 1st run
    lines = [line for line in err.splitlines() if line.startswith(
        f"spacetime: {folder} cannot be written: {os.strerror(errno.ENOSPC)}; kept the record in ")]
    kept = [Path(line.split("kept the record in ")[1].split(" (")[0]) for line in lines]
    assert len(kept) == 2 and all(path.is_file() for path in kept)
    later = store.rows(kept[0].parent)
    assert [r["strategy"] for r in stored[1:] + later] == ["single"] * 3
    assert [r["status"] for r in stored[1:] + later] == ["ok"] * 3  # every run measured, the sweep went on
    assert stored[1]["utc_time"] < later[0]["utc_time"] < later[1]["utc_time"]
    assert "2 record(s) could not be stored in" in err
