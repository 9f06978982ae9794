"""How a run that produced no result is classified and explained from torchrun's exit, its report and the
kernel's OOM-kill count (no torchrun here: its report is written out as torchrun 2.x prints it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.run.launch import classify, error_report
from harness.run.oom_kills import OomKills, after_run, counter_files, read_oom_kills


def torchrun_report(root: tuple[int, int], *others: tuple[int, int]) -> str:
    """torchrun's ChildFailedError text: the other failures, then the root cause (rank, exit code)."""
    def block(i: int, rank: int, code: int) -> str:
        name = {-9: "  (SIGKILL)", -15: "  (SIGTERM)"}.get(code, "")
        return (f"[{i}]:\n  time      : 2026-12-02_22:44:05\n  host      : localhost\n"
                f"  rank      : {rank} (local_rank: {rank})\n  exitcode  : {code} (pid: {1000 + rank}){name}\n"
                "  error_file: <N/A>\n")
    failures = "".join(block(i + 1, *f) for i, f in enumerate(others)) or "  <NO_OTHER_FAILURES>\n"
    return ("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n" + "=" * 55 +
            "\nharness.run.worker FAILED\n" + "-" * 55 + "\nFailures:\n" + failures + "-" * 55 +
            "\nRoot Cause (first observed failure):\n" + block(0, *root) + "=" * 55 + "\n")


SIGKILLED = torchrun_report((1, -9), (0, -15))  # rank 1 killed, rank 0 stopped by torchrun
NO_COUNT = OomKills(None)
STAYED = OomKills("/sys/fs/cgroup/job/memory.events", 3, 3)
MOVED = OomKills("/sys/fs/cgroup/job/memory.events", 3, 4)


@pytest.mark.parametrize("code,text,oom,status,why", [
    (1, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", NO_COUNT, "oom",
     "allocation failed (OutOfMemoryError)"),
    (1, "RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried", STAYED, "oom",
     "allocation failed (DefaultCPUAllocator: can't allocate memory)"),
    (1, SIGKILLED, MOVED, "oom", "the OOM killer: oom_kill went from 3 to 4 in /sys/fs/cgroup/job/memory.events"),
    (1, SIGKILLED, STAYED, "error", "not the OOM killer: oom_kill stayed at 3 in /sys/fs/cgroup/job/memory.events"),
    (1, SIGKILLED, NO_COUNT, "error", "not the OOM killer: no OOM-kill count is readable on this host"),
    (-9, "", STAYED, "error", "not the OOM killer: oom_kill stayed at 3"),  # torchrun itself killed
    (-9, "", MOVED, "oom", "the OOM killer: oom_kill went from 3 to 4"),
    (1, torchrun_report((1, 1)), MOVED, "error", ""),  # a count that moved, but no rank was SIGKILLed
    (1, "RuntimeError: boom", NO_COUNT, "error", ""),
])
def test_classify(code: int, text: str, oom: OomKills, status: str, why: str) -> None:
    got = classify(code, text, oom)
    assert got[0] == status and got[1].startswith(why), got


def _logs(tmp_path: Path, **stderr: str) -> Path:
    for rank, text in stderr.items():
        folder = tmp_path / "ranks" / "run_abc" / "attempt_0" / rank.lstrip("r")
        folder.mkdir(parents=True)
        (folder / "stderr.log").write_text(text)
    return tmp_path / "ranks"


def test_the_report_names_the_killed_rank_over_a_peer_that_failed_in_the_same_second(tmp_path: Path) -> None:
    # torchrun's root cause is the earliest failure to the second: a peer's "connection reset" can tie
    output = torchrun_report((0, 1), (1, -9))
    logs = _logs(tmp_path, r0="[rank0]: RuntimeError: Connection reset by peer", r1="")
    who, last = error_report(1, output, logs)
    assert who == "rank 1 killed by SIGKILL"
    assert "Root Cause" in last  # the killed rank said nothing: torchrun's lines instead
    assert classify(1, output, STAYED)[0] == "error"


def test_the_report_gives_the_failing_ranks_own_lines(tmp_path: Path) -> None:
    logs = _logs(tmp_path, r0="[rank0]: Connection closed by peer", r1="[rank1]: RuntimeError: planted")
    assert error_report(1, torchrun_report((1, 1), (0, -15)), logs) == ("rank 1 exited with 1",
                                                                       "[rank1]: RuntimeError: planted")
    assert error_report(-9, "torchrun's last words", logs) == ("torchrun killed by SIGKILL", "torchrun's last words")
    assert error_report(1, "no report at all", logs) == ("", "no report at all")


def _proc(tmp_path: Path, cgroup: str, mounts: list[str]) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "mountinfo").write_text("".join(f"{i} 1 0:{i} {m}\n" for i, m in enumerate(mounts, 30)))
    (proc / "vmstat").write_text("nr_free_pages 1000\noom_kill 7\n")
    return proc


def test_the_oom_kill_count_comes_from_cgroup_v2_first(tmp_path: Path) -> None:
    v2 = tmp_path / "unified"
    folder = v2 / "step"  # the mount's root is cgroup /job (a cgroup namespace); /proc says /job/step
    folder.mkdir(parents=True)
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n")
    proc = _proc(tmp_path, "0::/job/step\n", [f"/job {v2} rw,nosuid - cgroup2 cgroup2 rw"])
    before = read_oom_kills(proc)
    assert before == OomKills(str(folder / "memory.events"), 1)
    (folder / "memory.events").write_text("oom 2\noom_kill 2\n")
    assert after_run(before).happened and after_run(before).after == 2


def test_the_oom_kill_count_comes_from_cgroup_v1_where_memory_is_there(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "memory", tmp_path / "unified"
    (v1 / "batch" / "42").mkdir(parents=True)
    (v1 / "batch" / "42" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    v2.mkdir()  # a hybrid host: cgroup2 mounted, without the memory controller
    proc = _proc(tmp_path, "9:name=systemd:/\n4:memory:/batch/42\n3:cpu,cpuacct:/\n0::/\n",
                 [f"/ {v2} rw - cgroup2 cgroup2 rw", f"/ {v1} rw - cgroup cgroup rw,memory",
                  f"/ {tmp_path / 'cpu'} rw - cgroup cgroup rw,cpu,cpuacct"])
    assert counter_files(proc)[:2] == [v2 / "memory.events", v1 / "batch" / "42" / "memory.oom_control"]
    assert read_oom_kills(proc) == OomKills(str(v1 / "batch" / "42" / "memory.oom_control"), 5)


def test_without_a_cgroup_count_the_hosts_count_is_read(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "0::/\n", [])
    assert read_oom_kills(proc) == OomKills(str(proc / "vmstat"), 7)
    (proc / "vmstat").write_text("nr_free_pages 1000\n")
    assert read_oom_kills(proc) == NO_COUNT
    assert not after_run(NO_COUNT).happened
