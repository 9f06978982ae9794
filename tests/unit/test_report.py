"""`spacetime report`: newest record per case, Pareto front, PNG plots and an HTML page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.core.units import MIB
from harness.report.cases import latest
from harness.report.html_report import write_html, write_report
from harness.report.plots import pareto_front
from harness.run import store
from harness.run.records import environment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(strategy: str, peak: int, tokens: float, nproc: int = 2) -> Record:
    return Record(spec=RunSpec(strategy=strategy, nproc=nproc), status="ok", world_size=nproc, mesh_tp=1,
                  mesh_dp_shard=nproc, mesh_dp_replicate=1, global_batch=8, peak_bytes=peak,
                  peak_bytes_per_rank=[peak - r for r in range(nproc)], step_s_p50=1.0, step_s_p10=0.9,
                  step_s_p90=1.1, tokens_per_s=tokens, loss=7.0, env=environment({}))


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(100.0, 1000.0), (60.0, 700.0), (70.0, 650.0), (90.0, 1000.0), (50.0, 500.0)]
    assert pareto_front(points) == [4, 1, 3]  # (100, 1000) loses to (90, 1000); (70, 650) to (60, 700)


def test_latest_keeps_the_newest_record_per_case() -> None:
    old, new = _record("ddp", 10, 1.0).to_row(), _record("ddp", 20, 2.0).to_row()
    old["utc_time"], new["utc_time"] = "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"
    other = _record("tp", 5, 1.0).to_row()
    assert [r["peak_bytes"] for r in latest([new, old, other])] == [20, 5]


def test_report_writes_plots_and_page(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [_record(s, p, t).to_row() for s, p, t in
                                  [("ddp", 100 << 20, 1100.0), ("fsdp_full_shard", 65 << 20, 700.0),
                                   ("tp", 57 << 20, 800.0)]]
    rows.append(_record("single", 95 << 20, 1400.0, nproc=1).to_row())
    paths = write_report(rows, tmp_path / "report")
    assert [p.name for p in paths] == ["tradeoff.png", "rank_memory.png", "index.html"]
    for png in paths[:2]:
        assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 10_000
    page = paths[2].read_text()
    assert page.count("<tr>") == 1 + len(rows)  # header + one row per case
    assert "fsdp_full_shard" in page and "tradeoff.png" in page and "rank_memory.png" in page


def test_report_command_prints_tables_per_model(tmp_path: Path) -> None:
    store.append([_record("ddp", 100 << 20, 1100.0)], tmp_path / "store")
    out = subprocess.run([sys.executable, "-m", "harness.cli", "report", "--store", str(tmp_path / "store"),
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, env=dict(os.environ),
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "tiny: newest record of each case" in out.stdout and (tmp_path / "r" / "index.html").exists()


def test_cases_that_differ_in_knobs_stay_apart_and_say_which() -> None:
    from harness.core.spec import RunSpec
    from harness.report.cases import case_name, latest

    base = {**RunSpec(strategy="ddp", nproc=2).__dict__, "status": "ok", "device_name": "cpu", "utc_time": "t"}
    lora = {**base, "lora_rank": 8}
    assert latest([base, lora]) == [base, lora]
    assert (case_name(base), case_name(lora)) == ("ddp x2", "ddp x2 [lora r8 q,v]")


def test_predicted_and_simulated_figures_show_beside_the_measured_one(tmp_path: Path) -> None:
    from rich.console import Console

    from harness.report.tables import records_table

    rows = [_record("ddp", 100 << 20, 1100.0).to_row(), _record("tp", 50 << 20, 900.0).to_row()]
    rows[0].update(predicted_peak_bytes=96 << 20, simulated_peak_bytes=100 << 20)
    console = Console(width=250, record=True)
    console.print(records_table(rows))
    text = console.export_text()
    assert "predicted" in text and "simulated" in text and "MiB (error)" in text  # a header over two lines
    assert "96.0 (-4.0%)" in text and "100.0 (+0.0%)" in text
    paths = write_report(rows, tmp_path)
    assert (tmp_path / "accuracy.png").read_bytes().startswith(PNG_MAGIC)
    assert tmp_path / "accuracy.png" in paths
    assert "accuracy.png" in (tmp_path / "index.html").read_text()
    plain = [_record("ddp", 100 << 20, 1100.0).to_row()]  # no figures beside it: no extra columns, no plot
    console = Console(width=250, record=True)
    console.print(records_table(plain))
    assert "predicted" not in console.export_text()
    write_report(plain, tmp_path / "plain")
    assert (tmp_path / "plain" / "tradeoff.png").exists() and not (tmp_path / "plain" / "accuracy.png").exists()


def _two_shapes() -> list[dict[str, Any]]:
    """The same strategies at two shapes (global batch x seq 8 x 64 and 8 x 128), crowded on purpose: each case
    sits within a MiB and a few tokens/s of its twin, with the same label."""
    rows = []
    for i, (strategy, peak, tokens) in enumerate([("ddp", 100, 1100.0), ("fsdp_full_shard", 65, 700.0),
                                                   ("tp", 57, 800.0), ("fsdp_tp", 60, 650.0)]):
        for seq, shift in ((64, 0), (128, 1)):
            record = _record(strategy, (peak + shift) << 20, tokens + 5 * shift + (40 * i if seq == 128 else 0))
            record.spec = record.spec.with_(seq_len=seq)
            rows.append(record.to_row())
    return rows


def test_tradeoff_marks_shapes_apart_with_a_front_each_and_labels_that_do_not_overlap() -> None:
    from harness.report.cases import shape
    from harness.report.plots import tradeoff_figure

    rows = _two_shapes()
    fig = tradeoff_figure(rows)
    (ax,) = fig.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for key in ("8 x 64", "8 x 128"):
        assert f"{key} (global batch x seq)" in legend and f"Pareto front, {key}" in legend
        points = [(r["peak_bytes"] / MIB, r["tokens_per_s"]) for r in rows if shape(r) == key]
        (line,) = [ln for ln in ax.lines if ln.get_label() == f"Pareto front, {key}"]
        assert list(zip(line.get_xdata(), line.get_ydata(), strict=True)) == [points[i] for i in pareto_front(points)]
    assert "hollow: off its front" in legend
    marks = {c.get_label(): c.get_paths()[0].vertices.tolist() for c in ax.collections}
    assert marks["8 x 64 (global batch x seq)"] != marks["8 x 128 (global batch x seq)"]  # marker shapes differ
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == len(rows)
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert not [b for b in boxes if b.overlaps(ax.get_legend().get_window_extent(renderer))]


def test_html_states_only_the_shape_every_row_shares(tmp_path: Path) -> None:
    rows = _two_shapes()
    page = write_html(rows, tmp_path, [])
    text = page.read_text()
    assert "differs by row: global batch x seq (2 values)" in text and "per data-parallel rank 4" in text
    cells = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", text)
    assert [(s, shape, dtype) for s, shape, dtype in cells] == [(r["strategy"], f"8 x {r['seq_len']}", "fp32")
                                                                for r in rows]
    one = write_html([r for r in rows if r["seq_len"] == 64], tmp_path, []).read_text()
    assert "global batch x seq 8 x 64" in one and "the same on every row" in one and "differs" not in one
