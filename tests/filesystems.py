"""Stores that cannot be written, made for real where this machine allows it: a small tmpfs filled to the
last byte, a tmpfs mounted read-only, an immutable folder (chattr +i), a folder its owner may not write to
(a process without the capability to override file permissions).  Where a machine does not allow one (no
mount, no chattr, no setpriv), its stand-in makes the store's own writes fail with that errno.  Each kind's
`how` names what a test used, and the tests put it in their ids, so a run shows which one ran.
$SPACETIME_TEST_STAND_INS=1 uses the stand-ins everywhere, to check them where the real kinds work."""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

SMALL_TMPFS = "256k"
STAND_INS = os.environ.get("SPACETIME_TEST_STAND_INS") == "1"
NO_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]  # root that obeys permissions


@functools.cache
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, outside a locked-down container)."""
    if STAND_INS or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as where:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", where], capture_output=True).returncode:
            return False
        subprocess.run(["umount", where], check=True)
    return True


@functools.cache
def can_chattr() -> bool:
    """Whether `chattr +i` works on the file system of the temporary folder."""
    if STAND_INS or shutil.which("chattr") is None:
        return False
    with tempfile.TemporaryDirectory() as where:
        if subprocess.run(["chattr", "+i", where], capture_output=True).returncode:
            return False
        subprocess.run(["chattr", "-i", where], check=True)
    return True


@functools.cache
def can_drop_override() -> bool:
    """Whether a child of this root process can be made to obey file permissions (setpriv)."""
    return not STAND_INS and os.geteuid() == 0 and shutil.which("setpriv") is not None and subprocess.run(
        [*NO_OVERRIDE, "true"], capture_output=True).returncode == 0


@contextmanager
def tmpfs(where: Path, size: str = SMALL_TMPFS, readonly: bool = False) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if readonly else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def fill(folder: Path, leave: int = 0) -> None:
    """Write one file that leaves `leave` bytes free on `folder`'s file system (0: none at all)."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, b"\0" * (free_bytes(folder) - leave))
        if not leave:
            with pytest.raises(OSError) as full:
                while True:  # whatever a last partial block still takes
                    os.write(fd, b"\0" * 512)
            assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert free_bytes(folder) == leave


def inject(monkeypatch: pytest.MonkeyPatch, folder: Path, code: int) -> None:
    """The stand-in: every file the store opens or writes under `folder` fails with `code`, as that file
    system would make it fail."""
    from harness.run import store

    def failing(path: Any) -> bool:
        return Path(path).absolute().is_relative_to(folder.absolute())

    def fail(path: Any) -> OSError:
        return OSError(code, os.strerror(code), str(path))

    def open_(path: Any, *args: Any, **kwargs: Any) -> Any:
        if failing(path):
            raise fail(path)
        return open(path, *args, **kwargs)

    write_table = store.pq.write_table

    def write_table_(table: Any, where: Any, *args: Any, **kwargs: Any) -> None:
        if failing(where):
            raise fail(where)
        write_table(table, where, *args, **kwargs)

    monkeypatch.setattr(store, "open", open_, raising=False)
    monkeypatch.setattr(store.pq, "write_table", write_table_)


@contextmanager
def immutable(folder: Path) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


UNWRITABLE_HOW = {
    "full": ("tmpfs-filled", errno.ENOSPC) if can_mount() else ("injected-ENOSPC", errno.ENOSPC),
    "read-only": ("tmpfs-ro", errno.EROFS) if can_mount() else ("injected-EROFS", errno.EROFS),
    "immutable": ("chattr+i", errno.EPERM) if can_chattr() else ("injected-EPERM", errno.EPERM),
    "no-permission": ("setpriv" if can_drop_override() else "chmod" if os.geteuid() and not STAND_INS
                      else "injected-EACCES",
                      errno.EACCES),
}


@contextmanager
def unwritable(kind: str, base: Path, monkeypatch: pytest.MonkeyPatch,
               seed: Callable[[Path], object]) -> Iterator[tuple[Path, list[str]]]:
    """A store folder of `kind` under the empty folder `base`, holding what `seed(folder)` wrote while it
    could still be written; yields it and the command prefix to run the CLI under (setpriv's for
    no-permission as root, else none)."""
    how, code = UNWRITABLE_HOW[kind]
    folder = base / kind
    if how.startswith("tmpfs"):
        with tmpfs(folder) as mounted:
            seed(mounted)
            if how == "tmpfs-ro":
                subprocess.run(["mount", "-o", "remount,ro", str(mounted)], check=True)
            else:
                fill(mounted)
            yield mounted, []
        return
    folder.mkdir(parents=True)
    seed(folder)
    if how == "chattr+i":
        with immutable(folder):
            yield folder, []
        return
    if how in ("setpriv", "chmod"):
        folder.chmod(0o500)
    else:
        inject(monkeypatch, folder, code)
    try:
        yield folder, NO_OVERRIDE if how == "setpriv" else []
    finally:
        folder.chmod(0o700)


def ids(kinds: dict[str, tuple[str, int]]) -> list[str]:
    return [f"{kind}[{how}]" for kind, (how, _) in kinds.items()]
