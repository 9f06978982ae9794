"""Sweeps: a list of RunSpecs (a preset, run/presets.py) validated up front, then launched one by one into the
store; a run that fails is a record, and the sweep goes on.  Ctrl-C or SIGTERM stops the sweep: every record
finished so far is already stored, and the run that was measuring is stored with status `interrupted`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness.core.errors import Unsupported
from harness.core.progress import Progress, clock, current
from harness.core.record import FOLLOWER, Record
from harness.core.spec import RunSpec
from harness.run import store
from harness.run.annotate import annotate
from harness.run.launch import launch
from harness.run.nodes import Rendezvous
from harness.run.processes import Interrupted
from harness.run.records import failed_record
from harness.run.validate import validate


def validate_all(specs: list[RunSpec]) -> list[RunSpec | Record]:
    """Validate every spec before launching any: SpecError propagates (bad input), Unsupported becomes a
    record with status `unsupported`."""
    out: list[RunSpec | Record] = []
    for spec in specs:
        try:
            out.append(validate(spec))
        except Unsupported as why:
            out.append(failed_record(spec, "unsupported", str(why)))
    return out


def run_sweep(specs: list[RunSpec], store_path: Path | None, show_progress: bool = True,
              rdzv: Rendezvous | None = None, predict: bool = False, simulate: bool = False) -> list[Record]:
    """Launch each valid spec in turn; on several hosts (`rdzv`) every host runs the same plan, the runs on
    one host (`single`) on node 0 only, and only node 0 stores records.  `predict`/`simulate` add those
    peaks to each record that ran (annotate.py).  Progress (each row with the sweep's elapsed time and ETA, and
    the run's own steps) goes to the reporter the command line configured, unless `show_progress` is False."""
    follower = rdzv is not None and rdzv.node_rank > 0
    planned = [(i, s) for i, s in enumerate(validate_all(specs))  # i: the run's rendezvous, the same everywhere
               if not follower or (not isinstance(s, Record) and s.nnodes > 1)]
    records: list[Record] = []
    progress = current() if show_progress else Progress(enabled=False)
    start = time.monotonic()
    try:
        for index, item in planned:
            began = time.monotonic()
            with progress.prefixed(_live_prefix(len(records), len(planned), began - start, item)):
                records.append(_run_one(item, rdzv.with_run(index) if rdzv else None, store_path, predict,
                                        simulate))
                progress.show(f"{records[-1].status} in {clock(time.monotonic() - began)}")
    finally:
        progress.clear()
    return records


def _live_prefix(done: int, total: int, done_s: float, item: RunSpec | Record) -> Callable[[], str]:
    began = time.monotonic()
    return lambda: row_prefix(done, total, done_s, time.monotonic() - began, item)


def row_prefix(done: int, total: int, done_s: float, row_s: float, item: RunSpec | Record) -> str:
    """`sweep 3/8 1m20s ETA 2m10s | fsdp_full_shard tiny x2 | `: the row under way; the sweep's time so far
    (`done_s` for the rows done, `row_s` for this one); the rows left at the mean time of those done, less what
    this one has taken (no ETA before the first row is done)."""
    spec = item.spec if isinstance(item, Record) else item
    eta = clock(max(0.0, done_s / done * (total - done) - row_s)) if done else "-"
    return f"sweep {done + 1}/{total} {clock(done_s + row_s)} ETA {eta} | {spec.strategy} {spec.model} x{spec.nproc} | "


def _run_one(item: RunSpec | Record, rdzv: Rendezvous | None, store_path: Path | None, predict: bool,
             simulate: bool) -> Record:
    """Launch (unless `item` is already a record), annotate and store one run.  On Ctrl-C or SIGTERM the run
    that was measuring is stored as `interrupted` (one past its measuring, as it is) before the sweep stops."""
    record = item if isinstance(item, Record) else None
    try:
        if record is None:
            record = launch(item, rdzv)  # type: ignore[arg-type]
        if record.status != "unsupported":
            annotate(record, predict, simulate)
    except Interrupted as stop:
        record = stop.record
        raise
    finally:
        if record is not None and store_path is not None and record.status != FOLLOWER:
            store.save([record], store_path)  # a record the store refuses is kept elsewhere
    return record
