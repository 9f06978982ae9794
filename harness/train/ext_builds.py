"""Where C++ extensions are built, and the stale build locks that would stop a build forever.

The folder.  torch builds an extension into $TORCH_EXTENSIONS_DIR/<name> (default ~/.cache/torch_extensions,
keyed there by Python version and CUDA tag only).  `extensions_root()` adds a folder of its own under that,
named by the Python version, torch's version and a hash of the environment (sys.prefix), e.g.
`spacetime-py3.11-torch2.13.0+cpu-1a2b3c4d`: the compiled ops link against one torch and their build files name
one environment's paths, so two environments sharing a folder would load a wrong build or rebuild over each
other's.  A $TORCH_EXTENSIONS_DIR set by the user is kept as the parent of that folder; one already keyed (a
launcher hands it to its children) is used as it is.

The stale lock.  torch serializes a build with a `lock` file in the build folder (FileBaton): created with
O_EXCL, its file descriptor held open by the building process until the build ends, then closed and the file
removed.  Anyone else polls until the file is gone, with no limit.  A build that was killed (Ctrl-C, SIGKILL, a
timeout) leaves the file behind, and every later build waits on it forever.  The file records no owner, so
the rule here is: a `lock` that no live process holds open (no /proc/<pid>/fd entry is that file) and that is
older than STALE_AFTER_S (the holder closes the descriptor just before removing the file) is stale, and is
removed, with one line on stderr.  The judgement and the removal happen under an flock on the build folder, so
two launchers cannot both judge one lock and the second remove a lock the first's build has just taken.
A lock owned by another user is left alone unless this process is root (their /proc entries are not readable).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

EXTENSIONS_ENV = "TORCH_EXTENSIONS_DIR"
STATUS_ENV = "SPACETIME_BUILD_STATUS"  # a file where a build child names the build it is running
STALE_AFTER_S = 2.0
LOCK = "lock"  # torch.utils.cpp_extension's FileBaton in each build folder


def folder_key() -> str:
    """The name of this environment's build folder: Python, torch and a hash of the environment's prefix."""
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "unknown"
    where = hashlib.sha256(os.path.realpath(sys.prefix).encode()).hexdigest()[:8]
    return f"spacetime-py{sys.version_info.major}.{sys.version_info.minor}-torch{torch_version}-{where}"


def extensions_root() -> Path:
    """This environment's extension folder: under $TORCH_EXTENSIONS_DIR, else under torch's default root."""
    base = os.environ.get(EXTENSIONS_ENV)
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")  # as torch's _appdirs
        base = os.path.join(cache, "torch_extensions")
    key = folder_key()
    return Path(base) if Path(base).name == key else Path(base) / key


def extensions_env() -> dict[str, str]:
    """The environment a process needs to build into, or load from, this environment's folder."""
    return {EXTENSIONS_ENV: str(extensions_root())}


def lock_holders(lock: Path) -> list[int]:
    """The live processes that hold `lock` open (Linux /proc), this one included."""
    try:
        target = lock.stat()
    except OSError:
        return []
    where, found = os.path.realpath(lock.parent), []  # /proc names a file by its real path
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = list(fd_dir.iterdir())
        except OSError:
            continue  # gone, or not ours to read
        for link in links:
            with contextlib.suppress(OSError):
                if os.readlink(link).startswith(where):
                    seen = link.stat()
                    if (seen.st_dev, seen.st_ino) == (target.st_dev, target.st_ino):
                        found.append(int(fd_dir.parent.name))
                        break
    return found


def describe_holders(lock: Path) -> str:
    """'pid 123 (python -c ...)' for each holder of `lock`, for a message."""
    parts = []
    for pid in lock_holders(lock):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "?"
        parts.append(f"pid {pid} ({cmd[:80]})")
    return ", ".join(parts)


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _stale(lock: Path) -> bool | None:
    """True: stale; False: held (or not ours to judge); None: too young to judge yet, or gone."""
    try:
        info = lock.stat()
    except FileNotFoundError:
        return None
    if info.st_uid != os.getuid() and os.getuid() != 0:
        return False
    if lock_holders(lock):
        return False
    return True if time.time() - info.st_mtime >= STALE_AFTER_S else None


def clear_stale_lock(folder: Path) -> bool:
    """Remove `folder`'s build lock if its owner is gone (see the module's docstring); True if removed."""
    lock = folder / LOCK
    while lock.exists():
        with _folder_locked(folder):
            verdict = _stale(lock)
            if verdict:
                age = time.time() - lock.stat().st_mtime
                lock.unlink()  # under the flock no other cleaner can have taken it, and torch never replaces it
                print(f"spacetime: removed a stale build lock {lock} (no process holds it; {age:.0f} s old, "
                      "left by an interrupted build)", file=sys.stderr, flush=True)
                return True
        if verdict is False:
            return False
        time.sleep(0.2)  # too young to judge: a holder may be closing it
    return False


def prepare_build(name: str, what: str) -> Path:
    """Before building extension `name` (`what`: how a message names it): its folder in this environment's
    root, created, with a stale lock removed, and the build named in $SPACETIME_BUILD_STATUS's file."""
    folder = extensions_root() / name
    folder.mkdir(parents=True, exist_ok=True)
    status = os.environ.get(STATUS_ENV)
    if status:
        Path(status).write_text(json.dumps({"what": what, "folder": str(folder)}))
    clear_stale_lock(folder)
    return folder
