"""The Parquet store: atomic appends, schema version and environment on every record."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from harness.core.record import SCHEMA_VERSION, Record
from harness.core.spec import RunSpec
from harness.run import store
from harness.run.records import environment, failed_record


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
