"""The regression gate on measured runs: an A/A comparison passes, a planted 5% memory regression fails, and a
case that starts failing is a regression."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run import store
from harness.run.gate import compare, regressed
from harness.run.launch import launch
from harness.run.validate import validate

ROOT = Path(__file__).resolve().parents[2]
SPEC = RunSpec(model="tiny", strategy="planted", nproc=2, batch_size=2, seq_len=32, warmup=1, steps=4)


@pytest.fixture(scope="module")
def gate_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """base and aa: the same code twice (interleaved, two repeats each); planted: 5% of model state more;
    broken: the baseline's case now crashes."""
    path = tmp_path_factory.mktemp("gate") / "store"
    with pytest.MonkeyPatch.context() as mp:
        runs = [("base", 0.0), ("aa", 0.0), ("base", 0.0), ("aa", 0.0), ("planted", 0.05)]
        store.append([_run(SPEC, commit, extra, mp) for commit, extra in runs], path)
        store.append([_run(SPEC.with_(strategy="crash"), "broken", 0.0, mp)], path)
    return path


def _gate(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    return subprocess.run([str(ROOT / "ci" / "gate"), "--store", str(path), *args], capture_output=True,
                          text=True, env=env, timeout=120)


def _run(spec: RunSpec, commit: str, extra: float, monkeypatch: pytest.MonkeyPatch) -> Record:
    monkeypatch.setenv("SPACETIME_PLANTED_EXTRA", str(extra))
    record = launch(validate(spec))
    record.env["git_commit"] = commit  # as if each run came from its own checkout
    return record


def test_a_a_comparison_passes(gate_store: Path) -> None:
    rows = [r for r in store.rows(gate_store) if r["status"] == "ok"]
    assert len(rows) == 5
    _, _, changes = compare(rows, "base", "aa")
    assert {c.figure for c in changes} == {"peak_bytes", "step_s_p50"}
    assert not regressed(changes), changes
    result = _gate(gate_store, "--baseline", "base", "--candidate", "aa")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok:" in result.stdout


def test_planted_memory_regression_is_caught(gate_store: Path) -> None:
    base, cand, changes = compare(store.rows(gate_store), "base", "planted")
    memory = next(c for c in changes if c.figure == "peak_bytes")
    assert memory.verdict == "regression"
    assert memory.relative is not None and 0.02 < memory.relative < 0.06  # 5% of state, a bit less of peak
    result = _gate(gate_store, "--baseline", "base", "--candidate", "planted")
    assert result.returncode == 1 and "REGRESSION" in result.stdout, result.stdout + result.stderr
    assert "peak_bytes" in result.stdout and "regression" in result.stdout


def test_a_case_that_starts_failing_is_a_regression(gate_store: Path) -> None:
    rows = [{**r, "strategy": "planted"} if r["git_commit"] == "broken" else r for r in store.rows(gate_store)]
    _, _, changes = compare(rows, "base", "broken")
    assert [c.verdict for c in changes] == ["failed"]
    assert regressed(changes)
