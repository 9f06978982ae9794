"""Every table command fits the terminal: at 100 and 200 columns no line is wider than the terminal, every
strategy name, loss and layout appears whole, and --wide and --format give every column.  Records are built here
(and stored where the command reads a store); the tables are printed by the functions the commands call."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.core.units import MIB
from harness.report.console import console
from harness.report.knob_tables import TABLES
from harness.report.tables import print_records
from harness.run import store

WIDTHS = (100, 200)
SMOKE = ("single", "ddp", "fsdp_full_shard", "fsdp_shard_grad_op", "fsdp_hybrid_shard", "fsdp_offload", "tp",
         "fsdp_tp")
MESH = {"tp": (1, 1, 2), "fsdp_tp": (1, 1, 2), "fsdp_hybrid_shard": (2, 1, 1)}  # dp replicate, dp shard, tp


def _record(strategy: str, loss: float | None, commit: str = "c0ffee1", status: str = "ok", nproc: int = 2,
            peak_mib: float = 90.0, global_batch: int = 8, **spec: Any) -> Record:
    replicate, shard, tp = MESH.get(strategy, (1, nproc, 1))
    if nproc > 2:
        replicate, shard, tp = 1, nproc // 2, 2
    ok = status == "ok"
    return Record(spec=RunSpec(strategy=strategy, nproc=nproc, seq_len=spec.pop("seq_len", 64), **spec),
                  status=status, error=None if ok else "needs 2 GPUs\nRuntimeError: last line", world_size=nproc,
                  mesh_dp_replicate=replicate, mesh_dp_shard=shard, mesh_tp=tp, global_batch=global_batch,
                  peak_bytes=int(peak_mib * MIB) if ok else None, rss_peak_bytes=int(450.5 * MIB) if ok else None,
                  step_s_p50=0.123 if ok else None, step_s_p10=0.101 if ok else None,
                  step_s_p90=0.145 if ok else None, tokens_per_s=1234.0 if ok else None, loss=loss,
                  env={"git_commit": commit, "utc_time": "2026-12-01T10:00:00+00:00", "device_name": "cpu",
                       "torch_version": "2.13.0+cpu"})


def _smoke(commit: str = "c0ffee1", bump: float = 0.0) -> list[Record]:
    return [_record(s, 8.36924 + i * 0.01111, commit, peak_mib=60.0 + 7 * i + bump) for i, s in enumerate(SMOKE)]


def _mixed() -> list[Record]:
    """Two models, two shapes, knobs, several hosts, a row with nothing measured, and predicted and simulated
    peaks: what `show` prints from a store that several sweeps wrote."""
    rows = _smoke()
    rows += [_record("fsdp1_shard_grad_op", 10.12345, model="125m", batch_size=8, seq_len=128, dtype="bf16"),
             _record("fsdp_full_shard", 10.23456, model="125m", batch_size=8, seq_len=128,
                     activation_checkpointing="full", lora_rank=8, peak_mib=12_345.6),
             _record("zero3_offload", None, status="unsupported", model="125m"),
             _record("fsdp_tp", 9.87654, nproc=16, nnodes=2, model="125m", batch_size=1, seq_len=2048)]
    for record, (predicted, simulated) in zip(rows[-4:-1], [(0.96, 1.0), (1.031, None), (None, None)], strict=True):
        if record.peak_bytes and predicted:
            record.predicted_peak_bytes = int(record.peak_bytes * predicted)
        if record.peak_bytes and simulated:
            record.simulated_peak_bytes = int(record.peak_bytes * simulated)
    return rows


def _rows(records: list[Record]) -> list[dict[str, Any]]:
    return [r.to_row() for r in records]


def _stored(tmp_path: Path, *batches: list[Record]) -> Path:
    for batch in batches:
        store.append(batch, tmp_path / "store")
    return tmp_path / "store"


def _assert_fits(text: str, width: int, rows: list[dict[str, Any]]) -> None:
    assert text.strip()
    wide = [line for line in text.splitlines() if len(line) > width]
    assert not wide, f"{len(wide)} line(s) over {width} columns:\n" + "\n".join(wide)
    assert "…" not in text
    for row in rows:
        assert re.search(rf"(?<![\w]){re.escape(row['strategy'])}(?![\w])", text), row["strategy"]
        if row.get("loss") is not None:
            assert f"{row['loss']:.5f}" in text
    if any(row["nproc"] == 16 for row in rows):
        assert any(re.search(r"(?<![\w])16 tp2(?![\w])", line) for line in text.splitlines())  # on one line
    if any(row["strategy"] == "fsdp_hybrid_shard" for row in rows):
        assert any(re.search(r"(?<![\w])2 dp2x1(?![\w])", line) for line in text.splitlines())


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    """What a command (argv) or a table function (a callable) prints to stdout with $COLUMNS = width."""

    def run(width: int, what: list[str] | Callable[[], None], code: int = 0) -> str:
        monkeypatch.setenv("COLUMNS", str(width))
        capsys.readouterr()
        if callable(what):
            what()
        else:
            assert main(what) == code
        return capsys.readouterr().out

    return run


@pytest.mark.parametrize("width", WIDTHS)
def test_show_fits_and_keeps_names_losses_and_layouts_whole(tmp_path: Path, printed: Callable[..., str],
                                                            width: int) -> None:
    records = _mixed()
    folder = _stored(tmp_path, records)
    out = printed(width, ["show", "--store", str(folder)])
    _assert_fits(out, width, _rows(records))
    assert "RuntimeError: last line" in out  # the failure's last lines under the table
    last = printed(width, ["show", "--store", str(folder), "--last", "5"])
    _assert_fits(last, width, _rows(records[-5:]))
    assert "fsdp1_shard_grad_op" in last and "fsdp_full_shard" in last and "fsdp_tp" in last


@pytest.mark.parametrize("width", WIDTHS)
def test_sweep_and_run_tables_fit(printed: Callable[..., str], width: int) -> None:
    rows = _rows(_smoke())
    out = printed(width, lambda: print_records(rows, title="spacetime sweep --preset smoke"))
    _assert_fits(out, width, rows)
    assert "model tiny" in out and "global batch x seq 8 x 64" in out  # the same on every row: in the title
    one = _rows([_record("fsdp_shard_grad_op", 8.36924)])
    _assert_fits(printed(width, lambda: print_records(one)), width, one)


@pytest.mark.parametrize("width", WIDTHS)
def test_run_predict_simulate_keeps_the_error_columns_whole(printed: Callable[..., str], width: int) -> None:
    record = _record("fsdp_hybrid_shard", 8.36924, peak_mib=91.4)
    record.predicted_peak_bytes, record.simulated_peak_bytes = int(87.9 * MIB), int(91.4 * MIB)
    rows = _rows([record])
    out = printed(width, lambda: print_records(rows))
    _assert_fits(out, width, rows)
    assert "-3.8%" in out and "+0.0%" in out and "predicted" in out and "simulated" in out
    many = _rows(_mixed())
    _assert_fits(printed(width, lambda: print_records(many)), width, many)


@pytest.mark.parametrize("width", WIDTHS)
def test_levers_table_fits(printed: Callable[..., str], width: int) -> None:
    knobs = [{}, {"dtype": "bf16"}, {"dtype": "bf16", "activation_checkpointing": "full"},
             {"dtype": "bf16", "activation_checkpointing": "full", "lora_rank": 8, "optimizer": "adamw8bit"}]
    rows = _rows([_record("fsdp_shard_grad_op", 8.1 + i / 7, peak_mib=900.0 - 100 * i, **k)
                  for i, k in enumerate(knobs)])
    out = printed(width, lambda: print_records(rows))
    _assert_fits(out, width, rows)
    levers = printed(width, lambda: console().print(TABLES["levers"](rows)))
    assert max(map(len, levers.splitlines())) <= width and "lora r8 q,v" in levers.replace("\n", " ")


@pytest.mark.parametrize("width", WIDTHS)
def test_report_fits(tmp_path: Path, printed: Callable[..., str], width: int) -> None:
    records = _mixed()
    out = printed(width, ["report", "--store", str(_stored(tmp_path, records)), "--out", str(tmp_path / "r")])
    _assert_fits(out, width, _rows(records))
    assert "tiny: newest record of each case" in out and "125m: newest record of each case" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_fits(tmp_path: Path, printed: Callable[..., str], width: int) -> None:
    folder = _stored(tmp_path, _smoke("aaaaaaa"), _smoke("bbbbbbb", bump=5.0))
    out = printed(width, ["compare", "--store", str(folder)], code=1)
    assert max(map(len, out.splitlines())) <= width and "…" not in out
    for strategy in SMOKE:
        assert re.search(rf"(?<![\w]){strategy}(?![\w])", out), strategy
    assert "regression" in out and "peak_bytes" in out and out.strip().splitlines()[-1].startswith("REGRESSION")
    table = list(csv.DictReader(io.StringIO(printed(width, ["compare", "--store", str(folder), "--format", "csv"],
                                                    code=1))))
    peaks = [r for r in table if r["figure"] == "peak_bytes"]
    assert len(peaks) == len(SMOKE) and all(int(r["candidate"]) - int(r["baseline"]) == 5 * MIB for r in peaks)


def test_wide_shows_every_column_and_the_formats_every_field(tmp_path: Path, printed: Callable[..., str]) -> None:
    records = _mixed()
    rows = _rows(records)
    folder = _stored(tmp_path, records)
    narrow = printed(100, ["show", "--store", str(folder)])
    assert "--wide adds RSS MiB" in narrow and "RSS" not in narrow.split("--wide adds")[0]
    wide = printed(100, ["show", "--store", str(folder), "--wide"])
    assert "--wide adds" not in wide and all(h in wide for h in ("RSS", "MFU", "device", "p10-p90", "tokens/s"))
    assert "87.9" not in wide and "0.145" in wide  # p90
    table = list(csv.DictReader(io.StringIO(printed(100, ["show", "--store", str(folder), "--format", "csv"]))))
    assert [r["strategy"] for r in table] == [r["strategy"] for r in rows]
    assert [float(r["loss"]) if r["loss"] else None for r in table] == [r["loss"] for r in rows]
    assert int(table[0]["peak_bytes"]) == rows[0]["peak_bytes"] and table[0]["step_s_p90"] == "0.145"
    as_json = json.loads(printed(100, ["show", "--store", str(folder), "--format", "json"]))
    assert [r["nnodes"] for r in as_json][-1] == 2 and as_json[-4]["predicted_error"] == pytest.approx(-0.04, 1e-3)
    markdown = printed(100, ["show", "--store", str(folder), "--format", "markdown"]).strip().splitlines()
    assert len(markdown) == 2 + len(rows) and all(line.startswith("| ") for line in markdown[2:])


def test_a_bad_format_is_one_line_naming_the_flag_and_values(cli: Callable[[list[str]], tuple[int, str]]) -> None:
    code, err = cli(["show", "--format", "xml"])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--format" in err and all(f in err for f in ("table", "csv", "json", "markdown"))
