"""The Parquet store: atomic appends that a failure or a kill at any point leaves whole, schema version and
environment on every record, and readers that name and skip a damaged file and keep every good record."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.core.errors import SpecError
from harness.core.record import SCHEMA_VERSION, Record
from harness.core.spec import RunSpec
from harness.run import store
from harness.run.records import environment, failed_record
from tests.store_damage import DAMAGE, WHY, damaged_store


def _record(strategy: str, status: str = "ok") -> Record:
    if status != "ok":
        return failed_record(RunSpec(strategy=strategy), status, "why")
    return Record(spec=RunSpec(strategy=strategy), status="ok", peak_bytes=123, step_s=[0.1, 0.2], loss=1.5,
                  env=environment({}))


def test_append_then_load_keeps_every_field(store_dir: Path) -> None:
    store.append([_record("single"), _record("ddp", "oom")], store_dir)
    store.append([_record("tp", "timeout")], store_dir)
    rows = store.rows(store_dir)
    assert [r["strategy"] for r in rows] == ["single", "ddp", "tp"]
    assert [r["status"] for r in rows] == ["ok", "oom", "timeout"]
    first = rows[0]
    assert first["schema_version"] == SCHEMA_VERSION
    assert first["peak_bytes"] == 123 and first["step_s"] == [0.1, 0.2]
    for column in store.ENV_COLUMNS:
        assert column in first
    assert first["torch_version"] and first["host"] and first["utc_time"]
    assert store.rows(store_dir, strategy="ddp")[0]["status"] == "oom"


def test_appends_are_whole_files_and_temporaries_are_ignored(store_dir: Path) -> None:
    path = store.append([_record("single")], store_dir)
    assert path.parent == store_dir and path.name.startswith("part-")
    assert not list(store_dir.glob(".*.tmp"))
    (store_dir / ".part-crashed.parquet.tmp").write_bytes(b"half a file")  # a writer that died mid-way
    assert len(store.rows(store_dir)) == 1
    assert pq.read_schema(path).equals(store.SCHEMA)


def test_empty_or_missing_store_loads_as_empty(tmp_path: Path) -> None:
    assert store.rows(tmp_path / "nothing-here") == []
    assert store.load(tmp_path).num_rows == 0


def test_order_of_appends_is_kept_within_one_second(store_dir: Path) -> None:
    names = ["single", "ddp", "tp", "fsdp_tp", "fsdp_offload", "fsdp_full_shard"]
    for name in names:
        store.append([_record(name)], store_dir)
    assert [r["strategy"] for r in store.rows(store_dir)] == names


@pytest.mark.parametrize("kinds", [[kind] for kind in DAMAGE] + [list(DAMAGE)], ids=[*DAMAGE, "all"])
def test_a_damaged_file_is_named_once_and_skipped_and_every_good_record_loads(
        kinds: list[str], store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeds, bad = damaged_store(store_dir, kinds)
    table, skipped = store.read(store_dir)
    assert [r["seed"] for r in table.to_pylist()] == seeds  # every good record, in the order appended
    assert [path for path, _ in skipped] == bad
    for (_, why), kind in zip(skipped, kinds, strict=True):
        assert why.startswith(WHY[kind]) and "\n" not in why, why
    assert [r["seed"] for r in store.rows(store_dir)] == seeds
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"spacetime: skipped {path}: {why}" for path, why in skipped]


def test_an_older_file_without_the_newer_columns_loads_with_their_defaults(store_dir: Path) -> None:
    store.append([_record("ddp")], store_dir)
    old = [f for f in store.SCHEMA if f.name not in ("predicted_peak_bytes", "nnodes", "quant")]
    row = {f.name: store.rows(store_dir)[0][f.name] for f in old}
    table = pa.Table.from_pylist([row], schema=pa.schema(old)).cast(  # an int32 column, as another writer may
        pa.schema([f.with_type(pa.int32()) if f.name == "seed" else f for f in old]))
    pq.write_table(table, store_dir / "part-00000000T000000000000-old.parquet")
    first, second = store.rows(store_dir)
    assert first["predicted_peak_bytes"] is None and first["seed"] == second["seed"]
    assert first["nnodes"] == RunSpec().nnodes and first["quant"] == RunSpec().quant


def test_a_store_path_that_is_a_file_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "results.txt"
    path.write_text("not a store")
    with pytest.raises(SpecError, match=r"^--store: .*results.txt is a file, not a store folder$"):
        store.rows(path)


def _fail_half_way(monkeypatch: pytest.MonkeyPatch, stage: str, error: BaseException) -> None:
    """The next append stops at `stage`: half of the file written, written but not yet flushed to disk, or
    flushed but not yet renamed."""
    if stage == "writing":
        real = store.pq.write_table

        def write_half(table: pa.Table, where: Path, **kwargs: object) -> None:
            real(table, where, **kwargs)
            data = Path(where).read_bytes()
            Path(where).write_bytes(data[: len(data) // 2])
            raise error

        monkeypatch.setattr(store.pq, "write_table", write_half)
    elif stage == "flushing":
        monkeypatch.setattr(store, "_fsync", lambda path: (_ for _ in ()).throw(error))
    else:
        monkeypatch.setattr(store.os, "replace", lambda *args: (_ for _ in ()).throw(error))


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
@pytest.mark.parametrize("stage", ["writing", "flushing", "renaming"])
def test_a_write_interrupted_at_any_stage_leaves_the_earlier_records_and_no_temporary(
        stage: str, error: BaseException, store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    earlier = [store.append([_record(name)], store_dir) for name in ("single", "ddp")]
    before = store.rows(store_dir)
    _fail_half_way(monkeypatch, stage, error)
    with pytest.raises(type(error)):
        store.append([_record("tp")], store_dir)
    monkeypatch.undo()
    assert sorted(store_dir.iterdir()) == earlier  # no new part file, no temporary left behind
    assert store.rows(store_dir) == before


WRITER = """
import os, signal, sys
from pathlib import Path
from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run import store
folder, count, stage = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for _ in range(count):
    print(store.append([Record(spec=RunSpec(), status="ok", peak_bytes=1)], folder).name, flush=True)
die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if stage == "writing":
    real = store.pq.write_table
    def write_half(table, where, **kwargs):
        real(table, where, **kwargs)
        Path(where).write_bytes(Path(where).read_bytes()[:1000])
        die()
    store.pq.write_table = write_half
elif stage == "flushing":
    store._fsync = die
elif stage == "renaming":
    store.os.replace = die
while True:
    print(store.append([Record(spec=RunSpec(), status="ok", peak_bytes=1)], folder).name, flush=True)
"""


def _writer(folder: Path, count: int, stage: str = "none") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(count), stage],
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("stage", ["writing", "flushing", "renaming"])
def test_a_writer_killed_at_each_stage_leaves_the_earlier_records(stage: str, store_dir: Path) -> None:
    """SIGKILL, which nothing can clean up after: the half-made temporary file stays, and readers ignore it."""
    writer = _writer(store_dir, 2, stage)
    out, _ = writer.communicate(timeout=120)
    assert writer.returncode == -signal.SIGKILL
    assert len(list(store_dir.glob(".part-*.tmp"))) == 1
    table, skipped = store.read(store_dir)
    assert skipped == [] and sorted(p.name for p in store_dir.glob(store.RECORD_FILES)) == out.split()
    assert table.num_rows == 2


@pytest.mark.parametrize("after", [0.0, 0.003, 0.007, 0.011])
def test_a_writer_killed_at_any_moment_leaves_only_whole_files(after: float, store_dir: Path) -> None:
    writer = _writer(store_dir, 0)
    assert writer.stdout is not None
    for _ in range(3):  # a few whole appends first, then the kill lands wherever the next one is
        writer.stdout.readline()
    time.sleep(after)
    writer.kill()
    announced = set(writer.stdout.read().split())
    writer.wait()
    table, skipped = store.read(store_dir)
    files = {p.name for p in store_dir.glob(store.RECORD_FILES)}
    assert skipped == [] and table.num_rows == len(files) >= 3
    assert announced <= files  # a file may be whole and renamed without being announced


def test_the_probe_is_at_least_as_large_as_a_record_file(store_dir: Path) -> None:
    ranks = 8
    record = _record("fsdp_full_shard")
    for name in ("peak_bytes_per_rank", "rss_peak_bytes_per_rank", "param_bytes_per_rank"):
        setattr(record, name, [2**40 + rank for rank in range(ranks)])
    record.param_digest_per_rank = [1.0 / (rank + 3) for rank in range(ranks)]
    record.step_s = [0.1 + step / 1000 for step in range(20)]
    assert store.append([record], store_dir).stat().st_size <= store.PROBE_BYTES
