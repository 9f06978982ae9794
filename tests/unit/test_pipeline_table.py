"""A pipeline record in the records table: the mesh shows its pipeline degree, every rank's peak is shown
(the stages differ), and the measured bubble stands beside the schedule's theoretical one; a table without
pipeline rows keeps its width."""

from __future__ import annotations

import json

import pytest

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.core.units import MIB
from harness.report.tables import print_records


def _record(strategy: str, pp: int, peaks_mib: list[float], bubble: float | None, theory: float | None) -> Record:
    nproc = len(peaks_mib)
    return Record(spec=RunSpec(strategy=strategy, nproc=nproc, batch_size=8, pp_microbatches=4), status="ok",
                  world_size=nproc, mesh_dp_replicate=1, mesh_dp_shard=nproc // pp, mesh_tp=1, mesh_pp=pp,
                  global_batch=8, peak_bytes=int(max(peaks_mib) * MIB),
                  peak_bytes_per_rank=[int(p * MIB) for p in peaks_mib], step_s_p50=0.3, step_s_p10=0.2,
                  step_s_p90=0.4, loss=8.37831, bubble_fraction=bubble,
                  bubble_fraction_per_rank=None if bubble is None else [bubble] * nproc, bubble_theory=theory,
                  env={"device_name": "cpu"})


def test_pipeline_rows_show_each_stage_and_the_bubble(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    rows = [r.to_row() for r in (_record("pp_gpipe", 4, [36.3, 17.7, 17.7, 42.9], 0.62, 3 / 7),
                                 _record("ddp", 1, [95.2, 95.2, 95.2, 95.2], None, None))]
    print_records(rows)
    out = capsys.readouterr().out
    assert "4 pp4 4mb" in out  # 4 stages, 4 micro-batches
    assert "36 18 18 43" in out  # every rank's peak, in MiB
    assert "62% (43%)" in out


def test_a_table_without_pipelines_has_no_pipeline_columns(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    print_records([_record("ddp", 1, [95.2, 95.2], None, None).to_row()])
    assert "bubble" not in capsys.readouterr().out


def test_json_rows_carry_the_pipeline_fields() -> None:
    row = _record("pp_1f1b", 2, [48.3, 49.3], 0.3, 1 / 3).to_row()
    assert (row["mesh_pp"], row["bubble_fraction"], row["bubble_theory"]) == (2, 0.3, pytest.approx(1 / 3))
    assert json.loads(json.dumps(row))["bubble_fraction_per_rank"] == [0.3, 0.3]
