"""Fault injection on `tiny`: each way a run dies, injected once, and after each the status recorded, the sweep
going on, no process of the run left, and every earlier record readable through `spacetime show`.

The faults come from the test plugin's fault strategies (tests/plugins/spacetime_testplugins/faults.py),
which inject only under $SPACETIME_FAULT_DIR and mark there when a rank reaches its fault.  Every process a
test starts carries $SPACETIME_FAULT_TEST=<a fresh id> in its environment, and children inherit it: a
process left over is one whose /proc/PID/environ still holds it.  The store's own faults (corrupt files, a
full disk) are in test_store_faults.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run import store
from harness.run.records import failed_record
from harness.run.sweep import run_sweep

TAG_ENV = "SPACETIME_FAULT_TEST"
FAULT_DIR_ENV = "SPACETIME_FAULT_DIR"
SHORT: dict[str, Any] = dict(model="tiny", nproc=2, seq_len=16, batch_size=1, warmup=1, memory_steps=1, steps=1)
FLAGS = ["--model", "tiny", "--nproc", "2", "--seq-len", "16", "--batch-size", "1", "--warmup", "1",
         "--memory-steps", "1", "--steps", "1"]
RUN_TIMEOUT_S = 120  # a run the suite expects to end by itself; a run that hangs instead fails its test
HANG_TIMEOUT_S = 30  # longer than `tiny` takes to reach its first step on a loaded 2-core machine
GONE_WITHIN_S = 10.0  # ranks watch their launcher every 0.5 s; the rest is room for a loaded machine
TORN_DOWN_WITHIN_S = 10.0  # from a rank's fault to the run's record


def left_over(tag: str) -> list[int]:
    """Live processes (this one aside) whose environment holds the test's tag."""
    needle = f"{TAG_ENV}={tag}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        pid = int(environ.parent.name)
        try:
            alive = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
            if pid != os.getpid() and alive and needle in environ.read_bytes().split(b"\0"):
                found.append(pid)
        except (OSError, IndexError):
            continue  # gone while we looked
    return found


def none_left(tag: str, within: float = GONE_WITHIN_S) -> list[int]:
    """The tagged processes still alive after `within` seconds (none, when all is well)."""
    deadline = time.monotonic() + within
    while (left := left_over(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def assert_readable(store_dir: Path, expected: list[tuple[str, str]]) -> None:
    """`spacetime show` reads every record: as many as expected, and a row for each (strategy, status)."""
    shown = subprocess.run([sys.executable, "-m", "harness.cli", "show", "--store", str(store_dir)],
                           capture_output=True, text=True, env=dict(os.environ, COLUMNS="400"), timeout=120)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert f"{len(expected)} record(s)" in shown.stdout, shown.stdout
    lines = shown.stdout.splitlines()
    assert [(s, st) for s, st in expected if not any(re.search(rf"\b{s}\b.*\b{st}\b", ln) for ln in lines)] == []


def seed(store_dir: Path) -> list[tuple[str, str]]:
    """Two earlier records in a store (a run's fault must not cost them)."""
    earlier = [failed_record(RunSpec(strategy="plugin_ddp", **SHORT), "error", "an earlier record"),
               failed_record(RunSpec(strategy="plugin_ddp", **SHORT), "timeout", "another earlier record")]
    store.append(earlier, store_dir)
    return [(r.spec.strategy, r.status) for r in earlier]


def marked(fault_dir: Path, strategy: str, ranks: int = 2) -> bool:
    return all((fault_dir / f"{strategy}.rank{r}").exists() for r in range(ranks))


def fault_time(fault_dir: Path, strategy: str) -> float:
    return float((fault_dir / f"{strategy}.rank1").read_text())


# --- one sweep through the faults that end a run by themselves ------------------------------------------

@dataclass
class Swept:
    records: list[Record]
    store: Path
    faults: Path
    tmp: Path
    left: list[int]
    seconds: float


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Swept:
    """One sweep, in this process: a rank SIGKILLed, a rank raising, a rank hanging (timeout), a rank whose
    allocator fails, then a run that works."""
    base = tmp_path_factory.mktemp("faults")
    faults, tmp, store_dir, tag = base / "faults", base / "tmp", base / "store", uuid.uuid4().hex
    faults.mkdir()
    tmp.mkdir()
    specs = [RunSpec(strategy="fault_kill", timeout_s=RUN_TIMEOUT_S, **SHORT),
             RunSpec(strategy="fault_raise", timeout_s=RUN_TIMEOUT_S, **SHORT),
             RunSpec(strategy="fault_hang", timeout_s=HANG_TIMEOUT_S, **SHORT),
             RunSpec(strategy="fault_oom", timeout_s=RUN_TIMEOUT_S, **SHORT),
             RunSpec(strategy="plugin_ddp", timeout_s=RUN_TIMEOUT_S, **SHORT)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TAG_ENV, tag)  # inherited by torchrun and every rank
        patch.setenv(FAULT_DIR_ENV, str(faults))
        patch.setattr(tempfile, "tempdir", str(tmp))  # where each run's temporary folder goes
        start = time.perf_counter()
        records = run_sweep(specs, store_dir, show_progress=False)
        seconds = time.perf_counter() - start
    return Swept(records, store_dir, faults, tmp, none_left(tag), seconds)


def _kept(swept: Swept) -> None:
    """Nothing of any run is left, and every record is stored and readable."""
    assert swept.left == []
    assert list(swept.tmp.glob("spacetime-*")) == []
    assert_readable(swept.store, [(r.spec.strategy, r.status) for r in swept.records])


def _ended_soon_after_its_fault(swept: Swept, index: int) -> None:
    record = swept.records[index]
    ended = datetime.fromisoformat(record.env["utc_time"]).timestamp()
    assert ended - fault_time(swept.faults, record.spec.strategy) < TORN_DOWN_WITHIN_S


def test_a_rank_killed_with_sigkill_is_an_error_naming_the_rank(swept: Swept) -> None:
    record = swept.records[0]
    assert record.status == "error", record.error
    assert record.error is not None
    assert record.error.startswith("exit 1; rank 1 killed by SIGKILL; not the OOM killer: ")
    _ended_soon_after_its_fault(swept, 0)  # torchrun stopped rank 0, which waited in a collective
    _kept(swept)


def test_a_rank_that_raises_is_an_error_with_its_own_lines(swept: Swept) -> None:
    record = swept.records[1]
    assert record.status == "error", record.error
    assert record.error is not None and record.error.startswith("exit 1; rank 1 exited with 1\n")
    assert "RuntimeError: planted fault: rank 1 raised in its first step" in record.error
    _ended_soon_after_its_fault(swept, 1)
    _kept(swept)


def test_a_rank_hanging_in_a_collective_is_a_timeout(swept: Swept) -> None:
    record = swept.records[2]
    assert record.status == "timeout", record.error
    assert record.error is not None and record.error.startswith(f"no result after {HANG_TIMEOUT_S} s")
    assert marked(swept.faults, "fault_hang")  # rank 0 was in the collective, rank 1 stalled
    _kept(swept)


def test_the_allocator_failing_is_an_oom(swept: Swept) -> None:
    record = swept.records[3]
    assert record.status == "oom", record.error
    assert record.error is not None
    assert record.error.startswith("exit 1; rank 1 exited with 1; allocation failed (DefaultCPUAllocator")
    _ended_soon_after_its_fault(swept, 3)
    _kept(swept)


def test_the_sweep_goes_on_after_every_fault(swept: Swept) -> None:
    assert [r.status for r in swept.records] == ["error", "error", "timeout", "oom", "ok"]
    assert [r["status"] for r in store.rows(swept.store)] == ["error", "error", "timeout", "oom", "ok"]
    _kept(swept)


# --- faults that stop the launcher: the `spacetime` command in a process of its own -----------------------

@dataclass
class Command:
    proc: subprocess.Popen[bytes]
    tag: str
    faults: Path
    tmp: Path
    err: Path

    def stderr(self) -> str:
        return self.err.read_text()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spacetime(tmp_path: Path, *args: str) -> Command:
    """`spacetime ARGS` in a session of its own (as a shell runs a foreground job), tagged.  SIGINT is set back
    to its default in the child, as a shell does for a foreground job: a process started in the background (a CI
    script's `&`, a pytest-xdist worker started so) inherits SIGINT ignored, and Python then keeps it ignored."""
    faults, tmp, tag = tmp_path / "faults", tmp_path / "tmp", uuid.uuid4().hex
    faults.mkdir()
    tmp.mkdir()
    env = dict(os.environ, **{TAG_ENV: tag, FAULT_DIR_ENV: str(faults), "TMPDIR": str(tmp)})
    err = tmp_path / "stderr.txt"
    with open(tmp_path / "stdout.txt", "wb") as out, open(err, "wb") as errors:
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=env, stdout=out, stderr=errors,
                                start_new_session=True, preexec_fn=_default_sigint)
    return Command(proc, tag, faults, tmp, err)


def wait_until_marked(cmd: Command, strategy: str, within: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + within
    while not marked(cmd.faults, strategy):
        assert cmd.proc.poll() is None, f"spacetime exited {cmd.proc.returncode}: {cmd.stderr()}"
        assert time.monotonic() < deadline, f"no rank reached {strategy} in {within} s"
        time.sleep(0.2)


def _one_line(text: str, signame: str) -> None:
    assert "Traceback" not in text, text
    said = [line for line in text.splitlines() if "interrupted" in line]
    assert len(said) == 1 and said[0].startswith(f"spacetime: interrupted by {signame}"), text


def test_ctrl_c_mid_sweep_keeps_the_records_and_exits_130(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    cmd = spacetime(tmp_path, "sweep", "--preset", "smoke", "--strategies", "plugin_ddp,fault_hang,fault_raise",
                    "--models", "tiny", "--nproc", "2", "--global-batch", "2", "--seq-len", "16", "--warmup", "1",
                    "--memory-steps", "1", "--steps", "1", "--timeout", str(RUN_TIMEOUT_S), "--store", str(store_dir))
    wait_until_marked(cmd, "fault_hang")  # the second run is measuring
    assert [r["status"] for r in store.rows(store_dir)] == ["ok"]
    os.killpg(cmd.proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
    stopped = time.monotonic()
    assert cmd.proc.wait(timeout=60) == 130
    assert time.monotonic() - stopped < GONE_WITHIN_S
    _one_line(cmd.stderr(), "SIGINT")
    assert none_left(cmd.tag) == []
    assert list(cmd.tmp.glob("spacetime-*")) == []
    assert_readable(store_dir, [("plugin_ddp", "ok"), ("fault_hang", "interrupted")])
    assert not (cmd.faults / "fault_raise.rank0").exists()  # the sweep stopped there


def test_sigterm_stores_the_run_as_interrupted_and_exits_143(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    earlier = seed(store_dir)
    cmd = spacetime(tmp_path, "run", "--strategy", "fault_hang", *FLAGS, "--timeout", str(RUN_TIMEOUT_S),
                    "--store", str(store_dir))
    wait_until_marked(cmd, "fault_hang")
    cmd.proc.send_signal(signal.SIGTERM)  # a CI job cancelled: the launcher alone is told
    assert cmd.proc.wait(timeout=60) == 143
    _one_line(cmd.stderr(), "SIGTERM")
    assert none_left(cmd.tag) == []
    assert list(cmd.tmp.glob("spacetime-*")) == []
    assert_readable(store_dir, [*earlier, ("fault_hang", "interrupted")])


def test_the_launcher_killed_with_sigkill_takes_torchrun_and_its_ranks_along(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    earlier = seed(store_dir)
    cmd = spacetime(tmp_path, "run", "--strategy", "fault_hang", *FLAGS, "--timeout", str(RUN_TIMEOUT_S),
                    "--store", str(store_dir))
    wait_until_marked(cmd, "fault_hang")  # rank 0 waits in a collective, rank 1 sleeps
    assert len(left_over(cmd.tag)) >= 4  # the launcher, torchrun and two ranks
    cmd.proc.kill()
    cmd.proc.wait()
    assert none_left(cmd.tag) == []
    assert list(cmd.tmp.glob("spacetime-*")) == []  # a rank removed the run's folder for its launcher
    assert_readable(store_dir, earlier)


def test_a_timeout_kills_the_run_while_it_starts(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    earlier = seed(store_dir)
    cmd = spacetime(tmp_path, "run", "--strategy", "plugin_ddp", *FLAGS, "--timeout", "3", "--store", str(store_dir))
    assert cmd.proc.wait(timeout=RUN_TIMEOUT_S) == 1
    assert "Traceback" not in cmd.stderr()
    assert none_left(cmd.tag) == []
    assert list(cmd.tmp.glob("spacetime-*")) == []
    assert store.rows(store_dir)[-1]["error"].startswith("no result after 3 s")
    assert_readable(store_dir, [*earlier, ("plugin_ddp", "timeout")])
