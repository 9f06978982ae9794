"""Reading the store: what `show`, `report` and `compare` wait for before they print anything.

A sweep writes one file per record, so a store a few months old holds hundreds of small files.  Each file is
read on its own (a damaged one is named and skipped, the rest still load), which these benchmarks keep in
check: a store of N one-record files, whole, and with a damaged file of each kind among them.  No ranks are
launched; the stores are written once, in setup_cache.
"""

from __future__ import annotations

from pathlib import Path

FILES = [100, 500]
STORES = ["whole", "damaged"]


def _write(folder: Path, files: int, damaged: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.core.record import Record
    from harness.core.spec import RunSpec
    from harness.run import store
    from harness.run.records import environment

    env = environment({})
    for i in range(files):
        store.append([Record(spec=RunSpec(strategy="ddp", nproc=2, seed=i), status="ok", peak_bytes=i,
                             step_s=[0.1] * 4, loss=1.0, env=env)], folder)
    if damaged:
        whole = sorted(folder.glob(store.RECORD_FILES))[0].read_bytes()
        (folder / "part-1-empty.parquet").write_bytes(b"")
        (folder / "part-2-truncated.parquet").write_bytes(whole[: len(whole) // 2])
        pq.write_table(pa.table({"x": [1]}), folder / "part-3-foreign.parquet")


class StoreRead:
    """Seconds to read every record of a store of N one-record files (store.read: what load does, less the
    lines it prints for each damaged file)."""

    params = (FILES, STORES)
    param_names = ("files", "store")
    timeout = 600

    def setup_cache(self) -> str:
        root = Path("stores").absolute()
        for files in FILES:
            for kind in STORES:
                _write(root / f"{kind}-{files}", files, damaged=kind == "damaged")
        return str(root)

    def time_read(self, root: str, files: int, kind: str) -> None:
        from harness.run import store

        table, skipped = store.read(Path(root) / f"{kind}-{files}")
        assert table.num_rows == files and len(skipped) == (3 if kind == "damaged" else 0)
