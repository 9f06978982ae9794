"""The local results store: a Parquet dataset (one file per append) in a folder.

Appends are atomic (write a temporary file in the same folder, then rename), so a crashed or concurrent
sweep never leaves a half-written file that a reader would see.
"""

from __future__ import annotations

import os
import types
import typing
import uuid
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from harness.core.record import Record
from harness.core.spec import RunSpec

DEFAULT_STORE = "spacetime-results"
ENV_COLUMNS = ("torch_version", "cuda_version", "device_name", "backend", "cpu", "gpu_driver", "host",
               "python_version", "git_commit", "utc_time")


def default_store() -> Path:
    return Path(os.environ.get("SPACETIME_STORE", DEFAULT_STORE))


def _arrow_type(hint: Any) -> pa.DataType:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return _arrow_type(args[0])
    if typing.get_origin(hint) is list:
        return pa.list_(_arrow_type(args[0]))
    return {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}[hint]


def _columns(cls: type, skip: tuple[str, ...] = ()) -> list[pa.Field]:
    hints = typing.get_type_hints(cls)
    return [pa.field(f.name, _arrow_type(hints[f.name])) for f in fields(cls) if f.name not in skip]


SCHEMA = pa.schema([pa.field("schema_version", pa.int64()), *_columns(RunSpec),
                    *_columns(Record, skip=("spec", "env")),
                    *[pa.field(name, pa.string()) for name in ENV_COLUMNS]])


def append(records: list[Record], store: Path | None = None) -> Path:
    """Write `records` as one new Parquet file in the store; returns its path."""
    store = store or default_store()
    store.mkdir(parents=True, exist_ok=True)
    rows = [{name: r.to_row().get(name) for name in SCHEMA.names} for r in records]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    # Names sort in append order (microsecond stamp), so loading in name order keeps it.
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    final = store / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = store / f".{final.name}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


def load(store: Path | None = None) -> pa.Table:
    """Every stored record (older files gain nulls for columns added since), in the order appended."""
    store = store or default_store()
    if not store.exists() or not any(store.glob("part-*.parquet")):
        return SCHEMA.empty_table()
    dataset = ds.dataset(sorted(str(p) for p in store.glob("part-*.parquet")), schema=SCHEMA,
                         format="parquet")
    return dataset.to_table(use_threads=False)  # files in name order, rows in file order


def rows(store: Path | None = None, **filters: str | None) -> list[dict[str, Any]]:
    """Stored records as dicts, keeping those whose columns equal every non-None filter.  A spec field that
    an older file lacks reads as its default (those runs used it: the field did not exist yet)."""
    defaults = {f.name: f.default for f in fields(RunSpec)}
    wanted = {k: v for k, v in filters.items() if v is not None}
    out = []
    for row in load(store).to_pylist():
        row.update({k: v for k, v in defaults.items() if row.get(k) is None})
        if all(row.get(k) == v for k, v in wanted.items()):
            out.append(row)
    return out
