"""The regression gate on real measured runs: an A/A comparison passes, a planted 5% memory regression and
a run that starts failing are caught; the tolerances follow the records' own noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import store
from harness.compare import compare, compare_case, failed
from harness.launch import launch
from harness.record import Record
from harness.spec import RunSpec

ROOT = Path(__file__).resolve().parent.parent
SPEC = RunSpec(model="tiny", strategy="planted", nproc=2, batch_size=2, seq_len=32, warmup=1, steps=4)


def _run(spec: RunSpec, commit: str, extra: float, monkeypatch: pytest.MonkeyPatch) -> Record:
    monkeypatch.setenv("SPACETIME_PLANTED_EXTRA", str(extra))
    record = launch(spec.validate())
    record.env["git_commit"] = commit  # as if each run came from its own checkout
    return record


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


@pytest.mark.slow
def test_a_a_comparison_passes(gate_store: Path) -> None:
    rows = [r for r in store.rows(gate_store) if r["status"] == "ok"]
    assert len(rows) == 5
    _, _, changes = compare(rows, "base", "aa")
    assert {c.figure for c in changes} == {"peak_bytes", "step_s_p50"}
    assert not failed(changes), changes
    result = _gate(gate_store, "--baseline", "base", "--candidate", "aa")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok:" in result.stdout


@pytest.mark.slow
def test_planted_memory_regression_is_caught(gate_store: Path) -> None:
    base, cand, changes = compare(store.rows(gate_store), "base", "planted")
    memory = next(c for c in changes if c.figure == "peak_bytes")
    assert memory.verdict == "regression"
    assert memory.relative is not None and 0.02 < memory.relative < 0.06  # 5% of state, a bit less of peak
    result = _gate(gate_store, "--baseline", "base", "--candidate", "planted")
    assert result.returncode == 1 and "REGRESSION" in result.stdout, result.stdout + result.stderr
    assert "peak_bytes" in result.stdout and "regression" in result.stdout


@pytest.mark.slow
def test_a_case_that_starts_failing_is_a_regression(gate_store: Path) -> None:
    rows = [{**r, "strategy": "planted"} if r["git_commit"] == "broken" else r for r in store.rows(gate_store)]
    _, _, changes = compare(rows, "base", "broken")
    assert [c.verdict for c in changes] == ["failed"]
    assert failed(changes)


def _row(p50: float, p10: float, p90: float, peak: int = 1000) -> dict[str, Any]:
    return {"status": "ok", "peak_bytes": peak, "reserved_peak_bytes": None, "step_s_p50": p50,
            "step_s_p10": p10, "step_s_p90": p90}


def test_time_tolerance_widens_with_the_records_spread() -> None:
    quiet = compare_case("c", [_row(1.0, 0.99, 1.01)], [_row(1.15, 1.14, 1.16)])
    assert [c.verdict for c in quiet if c.figure == "step_s_p50"] == ["regression"]  # 15% > 10% floor
    noisy = compare_case("c", [_row(1.0, 0.8, 1.2)], [_row(1.15, 0.95, 1.35)])
    time = next(c for c in noisy if c.figure == "step_s_p50")
    assert time.verdict == "same" and time.tolerance == pytest.approx(2 * 0.4 / 1.0)
    repeats = compare_case("c", [_row(1.0, 0.99, 1.01), _row(1.2, 1.19, 1.21)], [_row(1.25, 1.24, 1.26)])
    assert next(c for c in repeats if c.figure == "step_s_p50").verdict == "same"


def test_memory_tolerance_is_tight_and_uses_repeat_ranges() -> None:
    assert [c.verdict for c in compare_case("c", [_row(1, 1, 1, 10**9)], [_row(1, 1, 1, 1_020_000_000)])
            if c.figure == "peak_bytes"] == ["regression"]  # +2% > 1%
    ranged = compare_case("c", [_row(1, 1, 1, 10**9), _row(1, 1, 1, 1_030_000_000)],
                          [_row(1, 1, 1, 1_030_000_000)])
    assert next(c for c in ranged if c.figure == "peak_bytes").verdict == "same"
    better = compare_case("c", [_row(1, 1, 1, 10**9)], [_row(1, 1, 1, 900_000_000)])
    assert next(c for c in better if c.figure == "peak_bytes").verdict == "improved"
