"""`spacetime run --progress` on a pipe: the launcher's builds and rank 0's phases on stderr in the order they
happen, and `--json` stdout still one JSON record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.progress import ENV
from harness.train.cpu_allocator import LIBRARY_ENV
from tests.helpers import spacetime

ORDER = ["build", "launch", "rendezvous", "model", "warmup", "memory", "timed", "gather"]


def test_run_shows_its_phases_in_order_on_stderr_and_stdout_stays_json(
        store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a launcher that has loaded the counter passes it on and checks no build; the command must check its own
    monkeypatch.delenv(LIBRARY_ENV, raising=False)
    result = spacetime("run", "--model", "tiny", "--strategy", "ddp", "--nproc", "2", "--steps", "2",
                       "--warmup", "1", "--memory-steps", "1", "--seq-len", "32", "--progress", "--json",
                       store=store_dir)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip())  # stdout holds the record and nothing else
    assert record["status"] == "ok"
    phases = [line.split(":")[0] for line in result.stderr.splitlines() if ":" in line]
    seen = [p for i, p in enumerate(phases) if p in ORDER and (i == 0 or phases[i - 1] != p)]
    assert seen == ORDER, result.stderr
    assert "timed: step 1/2" in result.stderr and "timed: step 2/2" in result.stderr
    assert "\r" not in result.stderr  # forced on a pipe: plain lines


def test_run_on_a_pipe_shows_no_progress_unless_asked(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)  # auto: stderr is a pipe here
    result = spacetime("run", "--model", "tiny", "--steps", "1", "--warmup", "1", "--memory-steps", "1",
                       "--seq-len", "16", "--json", store=store_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip())["status"] == "ok"
    assert not any(line.startswith(("build:", "rendezvous:", "timed:")) for line in result.stderr.splitlines())
