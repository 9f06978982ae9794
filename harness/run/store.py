"""The local results store: a Parquet dataset (one file per append) in a folder.

Appends are atomic (write a temporary file in the same folder, flush it to disk, then rename), so a crashed,
interrupted or concurrent writer never leaves a half-written file that a reader would see; a temporary file is
removed when its write fails, and readers ignore the names it uses.  Readers read each file on its own: one
that is empty, truncated, corrupt or of another schema is named on stderr and skipped, and every other record
still loads.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import tempfile
import types
import typing
import uuid
from contextlib import suppress
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.core.errors import SpecError
from harness.core.record import Record
from harness.core.spec import RunSpec

DEFAULT_STORE = "spacetime-results"
ENV_COLUMNS = ("torch_version", "cuda_version", "device_name", "backend", "cpu", "gpu_driver", "host",
               "python_version", "git_commit", "utc_time")
KEY_COLUMNS = ("schema_version", "model", "strategy", "status")  # every version's records have them
RECORD_FILES = "part-*.parquet"  # what readers read; temporary files start with a dot
PROBE_BYTES = 32 * 1024  # more than a one-record file (tests/unit/test_store.py checks it)
KERNEL_FILE_SYSTEMS = ("proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs",
                       "devpts", "bpf", "pstore")
_HINTS = {errno.EPERM: " (an immutable folder? lsattr shows an i)", errno.ENOTDIR: " (a part of the path is a file)"}
UNSAVED: list[str] = []  # where each record this process's store could not take went (a file, or "stderr")


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
    """Write `records` as one new Parquet file in the store; returns its path.  OSError if the store cannot
    take it (see `save`), with nothing left behind."""
    store = store or default_store()
    store.mkdir(parents=True, exist_ok=True)
    rows = [{name: r.to_row().get(name) for name in SCHEMA.names} for r in records]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    # Names sort in append order (microsecond stamp), so loading in name order keeps it.
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    final = store / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = store / f".{final.name}.tmp"
    try:
        pq.write_table(table, tmp, write_page_checksum=True)  # readers verify them: a flipped bit is caught
        _fsync(tmp)  # on disk before it gets its name: a crash never leaves an empty part file
        os.replace(tmp, final)
    except BaseException:  # a full disk, Ctrl-C, anything: the store keeps only whole files
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    with suppress(OSError):  # the rename itself, on disk (a folder some systems cannot open)
        _fsync(store)
    return final


def save(records: list[Record], store: Path | None = None) -> bool:
    """`append`, never losing a record: when the store cannot take them (a disk filled during a sweep), the
    records go to a store in the temporary folder, else to stderr as JSON lines, and one line says where.
    True when they are in `store`."""
    store = store or default_store()
    try:
        append(records, store)
        return True
    except OSError as err:
        why = f"{store} cannot be written: {_reason(err, store)}"
    try:
        kept = append(records, Path(tempfile.gettempdir()) / f"spacetime-unsaved-{os.getpid()}")
        print(f"spacetime: {why}; kept the record in {kept} (spacetime show --store {kept.parent})",
              file=sys.stderr)
        UNSAVED.append(str(kept))
    except OSError:
        for record in records:
            print(f"spacetime: {why}; the record, as JSON: {json.dumps(record.to_row())}", file=sys.stderr)
        UNSAVED.append("stderr")
    return False


def check_writable(folder: Path, flag: str = "store", probe_bytes: int = PROBE_BYTES) -> None:
    """SpecError naming `flag` unless `folder` takes a file of `probe_bytes` (written, flushed to disk and
    removed): a path that is a file, read-only, immutable, full or not ours fails here, before a run starts.
    Leaves nothing behind, not even the folders it had to create."""
    if folder.exists() and not folder.is_dir():
        raise SpecError(flag, f"{folder} is a file, not a folder")
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    probe = folder / f".probe-{uuid.uuid4().hex[:8]}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with open(probe, "wb") as out:
                out.write(os.urandom(probe_bytes))  # incompressible, as a record file nearly is
                out.flush()
                os.fsync(out.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as err:
        raise SpecError(flag, f"{folder} cannot be written: {_reason(err, folder)}") from None
    finally:
        for path in created:  # deepest first
            with suppress(OSError):
                path.rmdir()


def _reason(err: OSError, path: Path) -> str:
    """Why `path` cannot be written, in a few words: the system's, and what it usually means."""
    why = os.strerror(err.errno) if err.errno else _one_line(err)  # pyarrow's own wording is longer
    kind = _file_system(path)
    if kind in KERNEL_FILE_SYSTEMS:
        return f"it lies on {kind}, a kernel file system, not storage ({why})"
    return why + _HINTS.get(err.errno or 0, "")


def _file_system(path: Path) -> str | None:
    """The type of the file system `path` lies on (/proc/self/mounts), or None where that is not known."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    target, best = str(path.absolute()), ("", "")
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, parts[2])
    return best[1] or None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _fits(have: pa.DataType, want: pa.DataType) -> bool:
    """Whether a stored column of type `have` reads as `want` without changing what it means."""
    if have == want or pa.types.is_null(have):
        return True
    if pa.types.is_list(want):
        return (pa.types.is_list(have) or pa.types.is_large_list(have)) and _fits(have.value_type,
                                                                                  want.value_type)
    kinds = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_boolean)
    same = [kind for kind in kinds if kind(want)]
    return bool(same) and (same[0](have) or (pa.types.is_floating(want) and pa.types.is_integer(have))
                           or (pa.types.is_string(want) and pa.types.is_large_string(have)))


def _schema_problem(schema: pa.Schema) -> str | None:
    if schema.equals(SCHEMA):  # this version's own files: the common case, and cheap
        return None
    missing = [name for name in KEY_COLUMNS if name not in schema.names]
    if missing:
        return f"not a record file (no column {', '.join(missing)})"
    for want in SCHEMA:
        index = schema.get_field_index(want.name)
        if index >= 0 and not _fits(schema.field(index).type, want.type):
            return f"incompatible schema (column {want.name} is {schema.field(index).type}, not {want.type})"
    return None


def _conform(table: pa.Table) -> pa.Table:
    """`table` with SCHEMA's columns, in its order: an older file's missing columns as nulls, others dropped."""
    if table.schema.equals(SCHEMA):
        return table
    columns = [table.column(f.name).cast(f.type) if f.name in table.schema.names else pa.nulls(len(table), f.type)
               for f in SCHEMA]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def read_file(path: Path) -> pa.Table:
    """One record file as SCHEMA's table; ValueError saying why it cannot be read as one."""
    try:
        if path.stat().st_size == 0:
            raise ValueError("empty file (0 bytes)")
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"not a Parquet file ({_one_line(err)})") from None
    with parquet:
        problem = _schema_problem(parquet.schema_arrow)
        if problem:
            raise ValueError(problem)
        try:
            return _conform(parquet.read(use_threads=False))
        except (OSError, pa.ArrowException) as err:
            raise ValueError(f"unreadable ({_one_line(err)})") from None


def record_files(store: Path) -> list[Path]:
    """The store's record files in append order; SpecError if `store` exists but is no folder to read."""
    if not store.exists():
        return []
    if not store.is_dir():
        raise SpecError("store", f"{store} is a file, not a store folder")
    try:
        return sorted(store.glob(RECORD_FILES))
    except OSError as err:
        raise SpecError("store", f"{store} cannot be read: {_one_line(err)}") from None


def read(store: Path | None = None) -> tuple[pa.Table, list[tuple[Path, str]]]:
    """Every readable record, in the order appended, and (file, why) for each file skipped."""
    tables, skipped = [], []
    for path in record_files(store or default_store()):
        try:
            tables.append(read_file(path))
        except ValueError as why:
            skipped.append((path, str(why)))
    return (pa.concat_tables(tables) if tables else SCHEMA.empty_table()), skipped


def load(store: Path | None = None) -> pa.Table:
    """Every stored record (older files gain nulls for columns added since), in the order appended.  A file
    that cannot be read is named on stderr, one line each, and skipped."""
    table, skipped = read(store)
    for path, why in skipped:
        print(f"spacetime: skipped {path}: {why}", file=sys.stderr)
    return table


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
