"""The kernel's own count of OOM kills, read before and after a run: a rank that died of SIGKILL is `oom` only
when the count moved (anything else may send SIGKILL: a user, a scheduler, a watchdog).

Where the count is kept, first found wins:
- cgroup v2: `memory.events`, line `oom_kill`, of this process's cgroup (hierarchical: it counts the ranks,
  which inherit the cgroup, and any cgroup below);
- cgroup v1: `memory.oom_control`, line `oom_kill`, of this process's memory cgroup;
- neither readable: `/proc/vmstat`, line `oom_kill`, the whole host's count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OomKills:
    """The OOM-kill count of one file before and after a run; None where it could not be read."""

    source: str | None  # the file read, None where no count is readable here
    before: int | None = None
    after: int | None = None

    @property
    def happened(self) -> bool:
        return self.before is not None and self.after is not None and self.after > self.before

    def describe(self) -> str:
        if self.source is None or self.before is None or self.after is None:
            return "no OOM-kill count is readable on this host (cgroup memory.events, memory.oom_control, " \
                   "/proc/vmstat)"
        if self.happened:
            return f"oom_kill went from {self.before} to {self.after} in {self.source}"
        return f"oom_kill stayed at {self.before} in {self.source}"


def _cgroup_paths(proc: Path) -> dict[str, str]:
    """This process's cgroup per hierarchy: '' for v2, else the v1 controller names ('memory')."""
    paths: dict[str, str] = {}
    try:
        text = (proc / "self" / "cgroup").read_text()
    except OSError:
        return paths
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in parts[1].split(",") if parts[1] else [""]:
                paths[name] = parts[2]
    return paths


def _mounts(proc: Path) -> list[tuple[str, str, str, str]]:
    """(root inside the hierarchy, mount point, fs type, super options) of each cgroup mount."""
    found: list[tuple[str, str, str, str]] = []
    try:
        text = (proc / "self" / "mountinfo").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            found.append((fields[3], fields[4], rest[0], rest[2]))
    return found


def _in_mount(root: str, mount_point: str, cgroup: str) -> Path | None:
    """The folder of `cgroup` under a mount of its hierarchy whose root is `root`."""
    if cgroup != root and not cgroup.startswith(root.rstrip("/") + "/"):
        return None
    return Path(mount_point) / cgroup[len(root):].lstrip("/")


def counter_files(proc: Path = Path("/proc")) -> list[Path]:
    """Each file that may hold the count (line `oom_kill`), in the order they are tried."""
    paths, files = _cgroup_paths(proc), []
    for root, point, fstype, _ in _mounts(proc):
        if fstype == "cgroup2" and "" in paths:
            folder = _in_mount(root, point, paths[""])
            if folder is not None:
                files.append(folder / "memory.events")
    for root, point, fstype, options in _mounts(proc):
        if fstype == "cgroup" and "memory" in options.split(",") and "memory" in paths:
            folder = _in_mount(root, point, paths["memory"])
            if folder is not None:
                files.append(folder / "memory.oom_control")
    files.append(proc / "vmstat")
    return files


def _read(path: Path) -> int | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def read_oom_kills(proc: Path = Path("/proc")) -> OomKills:
    """The count before a run, from the first file that holds one."""
    for path in counter_files(proc):
        count = _read(path)
        if count is not None:
            return OomKills(str(path), count)
    return OomKills(None)


def after_run(before: OomKills) -> OomKills:
    """The same file read again once the run has ended."""
    if before.source is None:
        return before
    return OomKills(before.source, before.before, _read(Path(before.source)))
