"""Failed runs are results: a crash, an OOM and a hang each become a record, no rank outlives its run, and a
sweep goes on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.core.spec import RunSpec
from harness.run import store
from harness.run.launch import launch
from harness.run.sweep import run_sweep
from harness.run.validate import validate

QUICK: dict[str, Any] = dict(model="tiny", seq_len=16, batch_size=1, warmup=1, steps=1)


def _workers_with(marker: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "harness.run.worker" in text and marker in text:
            found.append(int(cmdline.parent.name))
    return found


def test_crash_is_an_error_record_with_the_failing_ranks_lines() -> None:
    record = launch(validate(RunSpec(strategy="crash", nproc=2, **QUICK)))
    assert record.status == "error"
    assert record.error is not None
    assert "rank 1" in record.error and "planted failure in the crash strategy" in record.error
    assert record.peak_bytes is None and record.env["torch_version"]


def test_allocation_failure_is_an_oom_record() -> None:
    record = launch(validate(RunSpec(strategy="oom", **QUICK)))
    assert record.status == "oom", record.error


def test_sweep_records_failures_and_goes_on(store_dir: Path) -> None:
    specs = [RunSpec(strategy="crash", nproc=2, **QUICK), RunSpec(strategy="plugin_ddp", nproc=2, **QUICK)]
    records = run_sweep(specs, store_dir, show_progress=False)
    assert [r.status for r in records] == ["error", "ok"]
    assert [r["status"] for r in store.rows(store_dir)] == ["error", "ok"]


def test_hang_is_a_timeout_record_and_every_rank_is_killed() -> None:
    start = time.perf_counter()
    record = launch(validate(RunSpec(strategy="hang", nproc=2, timeout_s=20, seed=918273, **QUICK)))
    assert record.status == "timeout"
    assert "no result after 20 s" in (record.error or "")
    assert time.perf_counter() - start < 60
    time.sleep(1)  # SIGKILL is delivered asynchronously
    assert _workers_with('"seed": 918273') == []  # no rank outlives its run
