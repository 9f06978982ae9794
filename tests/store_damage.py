"""Record files damaged the ways a store's files get damaged, and a store that holds them between good ones."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run import store
from harness.run.records import environment


def record(seed: int, commit: str = "aaaa", status: str = "ok") -> Record:
    env = environment({})
    env["git_commit"] = commit
    return Record(spec=RunSpec(strategy="ddp", nproc=2, seed=seed), status=status, peak_bytes=1000 + seed,
                  step_s=[0.1, 0.1], step_s_p10=0.1, step_s_p50=0.1, step_s_p90=0.1, loss=1.5, env=env)


def _good_file(path: Path) -> bytes:
    """The bytes of a whole one-record file, written by the store itself."""
    written = store.append([record(999)], path.parent / "scratch")
    data = written.read_bytes()
    written.unlink()
    written.parent.rmdir()
    return data


def empty(path: Path) -> None:
    path.write_bytes(b"")


def truncated(path: Path) -> None:  # a writer that stopped half-way, renamed by something else
    data = _good_file(path)
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not a Parquet file\n" * 100)


def flipped_bit(path: Path) -> None:
    """A whole file with one byte changed in its first data page (a disk or a copy that went bad): the
    page's checksum no longer matches."""
    data = bytearray(_good_file(path))
    meta = pq.ParquetFile(pa.BufferReader(bytes(data))).metadata
    column = meta.row_group(0).column(meta.schema.to_arrow_schema().get_field_index("peak_bytes"))
    start = column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset
    data[start + column.total_compressed_size - 1] ^= 0xFF  # the chunk's last byte: a value of its last page
    path.write_bytes(bytes(data))


def foreign(path: Path) -> None:  # another tool's Parquet file dropped in the folder
    pq.write_table(pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]}), path)


def incompatible(path: Path) -> None:  # the record's columns, one of them of another type
    pq.write_table(pa.table({"schema_version": [4], "model": ["tiny"], "strategy": ["ddp"], "status": ["ok"],
                             "peak_bytes": ["a lot"]}), path)


def folder(path: Path) -> None:
    path.mkdir()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "empty": empty, "truncated": truncated, "garbage": garbage, "flipped-bit": flipped_bit,
    "foreign-schema": foreign, "incompatible-schema": incompatible, "a-folder": folder}
WHY = {"empty": "empty file (0 bytes)", "truncated": "not a Parquet file", "garbage": "not a Parquet file",
       "flipped-bit": "unreadable", "foreign-schema": "not a record file", "incompatible-schema":
       "incompatible schema (column peak_bytes is string, not int64)", "a-folder": "not a Parquet file"}


def damaged_store(where: Path, kinds: list[str], commits: tuple[str, ...] = ("aaaa",)) -> tuple[list[int], list[Path]]:
    """A store with a good record before and after each damaged file (one per kind), the good records
    spread over `commits`; returns the good records' seeds in order, and the damaged files."""
    seeds, bad = [], []
    for i, kind in enumerate(kinds):
        for seed in (2 * i, 2 * i + 1):
            store.append([record(seed, commits[seed % len(commits)])], where)
            seeds.append(seed)
            if seed % 2 == 0:
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")  # between its neighbours
                path = where / f"part-{stamp}-{kind}.parquet"
                DAMAGE[kind](path)
                bad.append(path)
    return seeds, bad
