"""A run stopped by Ctrl-C or SIGTERM is a record with status `interrupted`, which says nothing of its case:
the regression gate passes over it and `report` shows the case's last finished record instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.core.record import INTERRUPTED, STATUSES, Record
from harness.core.spec import RunSpec
from harness.report.cases import latest
from harness.run.gate import compare, regressed


def _row(commit: str, status: str, when: str, peak: int | None = 1000) -> dict[str, Any]:
    return {"model": "tiny", "strategy": "ddp", "nproc": 2, "device": "cpu", "batch_size": 1, "seq_len": 16,
            "device_name": "cpu0", "git_commit": commit, "utc_time": when, "status": status,
            "peak_bytes": peak if status == "ok" else None, "reserved_peak_bytes": None,
            "step_s_p50": 1.0 if status == "ok" else None, "step_s_p10": 1.0, "step_s_p90": 1.0}


def test_interrupted_is_a_status() -> None:
    assert INTERRUPTED == "interrupted" and INTERRUPTED in STATUSES


def test_the_gate_passes_over_an_interrupted_run() -> None:
    rows = [_row("a", "ok", "2026-01-01T00:00:00"), _row("b", "ok", "2026-01-02T00:00:00"),
            _row("c", INTERRUPTED, "2026-01-03T00:00:00")]
    base, cand, changes = compare(rows)
    assert (base, cand) == ("a", "b")  # the newest commit with a finished record is the candidate
    assert not regressed(changes)
    base, cand, changes = compare(rows + [_row("c", "error", "2026-01-03T01:00:00")])
    assert (base, cand, [c.verdict for c in changes]) == ("b", "c", ["failed"])  # a failure still counts
    _, _, changes = compare(rows, baseline="a", candidate="b")
    assert [c.verdict for c in changes] == ["same", "same"]


def test_a_case_whose_only_candidate_run_was_interrupted_is_missing_not_failed() -> None:
    rows = [_row("a", "ok", "2026-01-01T00:00:00"), _row("b", INTERRUPTED, "2026-01-02T00:00:00"),
            {**_row("b", "ok", "2026-01-02T00:01:00"), "strategy": "fsdp"}]
    _, cand, changes = compare(rows, baseline="a", candidate="b")
    assert cand == "b"
    assert [(c.case.split()[1], c.verdict) for c in changes] == [("ddp", "missing")] + [("fsdp", "new")]
    assert not regressed(changes)


def test_report_shows_the_last_finished_record_of_a_case() -> None:
    ok, stopped = _row("a", "ok", "2026-01-01T00:00:00"), _row("b", INTERRUPTED, "2026-01-02T00:00:00")
    assert latest([ok, stopped]) == [ok]
    assert latest([stopped]) == [stopped]
    error = _row("c", "error", "2026-01-03T00:00:00")
    assert latest([ok, stopped, error]) == [error]


def test_ctrl_c_while_run_simulates_keeps_the_measured_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import harness.run.launch
    from harness.cli.main import main
    from harness.run import store

    def launch(spec: RunSpec, rdzv: object = None) -> Record:
        return Record(spec=spec, status="ok", peak_bytes=123)

    def simulated_peak(spec: RunSpec, device: str) -> tuple[int | None, str | None]:
        raise KeyboardInterrupt  # Ctrl-C while the simulation runs

    monkeypatch.setattr(harness.run.launch, "launch", launch)
    monkeypatch.setattr("harness.simulate.separate_process.simulated_peak", simulated_peak)
    assert main(["run", "--model", "tiny", "--simulate", "--store", str(tmp_path)]) == 130
    assert [(r["status"], r["peak_bytes"]) for r in store.rows(tmp_path)] == [("ok", 123)]
    assert capsys.readouterr().err.startswith("spacetime: interrupted by SIGINT")
