"""Presets and the shared setup_cache machinery of the asv suite (no benchmarks here).

The preset is `$SPACETIME_ASV_PRESET` (`cpu` or `gpu`), else `gpu` when this machine has a CUDA device.
- cpu: `tiny`, 2 ranks (`single` on 1), gloo: quick enough for `asv run` on a laptop;
- gpu: `1b`, `3b`, `7b`, `8b` on every GPU of the machine (`single` on 1).
Parameters come from the zoo and the strategy registry, so a new strategy (built-in or plugin) shows up
without editing the suite.  Nothing here launches ranks at import: runs start in `setup_cache` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

PRESET_ENV = "SPACETIME_ASV_PRESET"


@dataclass(frozen=True)
class Preset:
    name: str
    models: tuple[str, ...]
    nproc: int
    global_batch: int
    seq_len: int
    warmup: int
    steps: int
    timeout_s: float  # per run


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def preset() -> Preset:
    name = os.environ.get(PRESET_ENV) or ("gpu" if _gpu_count() else "cpu")
    if name == "cpu":
        return Preset("cpu", ("tiny",), nproc=2, global_batch=4, seq_len=64, warmup=1, steps=4, timeout_s=300)
    if name == "gpu":
        gpus = max(_gpu_count(), 1)
        return Preset("gpu", ("1b", "3b", "7b", "8b"), nproc=gpus, global_batch=gpus, seq_len=2048, warmup=2,
                      steps=10, timeout_s=1200)
    raise ValueError(f"{PRESET_ENV}={name!r}: valid: cpu, gpu")


def strategies() -> list[str]:
    from strategies import strategy_names

    return strategy_names()


def spec_for(p: Preset, model: str, strategy: str) -> Any:
    """The RunSpec of one parameter set: the preset's global batch split over the data-parallel ranks."""
    from harness.core.spec import RunSpec
    from harness.run.presets import matrix

    base = RunSpec(seq_len=p.seq_len, warmup=p.warmup, steps=p.steps, timeout_s=p.timeout_s)
    return matrix([strategy], [model], p.nproc, p.global_batch, base)[0]


def measure_all(p: Preset) -> dict[str, dict[str, Any]]:
    """One measured run per (model, strategy), rows keyed "model/strategy" (see measure_specs)."""
    return measure_specs({f"{model}/{strategy}": spec_for(p, model, strategy)
                          for model in p.models for strategy in strategies()})


def measure_specs(specs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One measured run per labelled spec, rows keyed by label; a spec that cannot run on this machine
    becomes status `unsupported`.  With $SPACETIME_STORE set, every record is also appended to that store
    (so the regression gate sees what asv measured)."""
    from harness.core.errors import SpecError, Unsupported
    from harness.run import store
    from harness.run.launch import launch
    from harness.run.records import failed_record
    from harness.run.validate import validate

    if os.environ.get("SPACETIME_STORE"):  # a store that cannot take a record fails before any run
        store.check_writable(store.default_store())
    rows: dict[str, dict[str, Any]] = {}
    for label, spec in specs.items():
        try:
            record = launch(validate(spec))
        except (SpecError, Unsupported) as why:
            record = failed_record(spec, "unsupported", str(why))
        if os.environ.get("SPACETIME_STORE"):
            store.save([record])  # a record the store refuses is kept elsewhere, and named
        rows[label] = record.to_row()
    return rows


def check_row(row: dict[str, Any], column: str) -> None:
    """For a benchmark's `setup`: NotImplementedError (asv skips, shows n/a) where the run could not be
    done here, did not fit in memory, or this device has no such figure; a crash or a timeout passes, so its
    benchmarks fail.  (A case that used to fit and now runs out of memory is the gate's to catch.)"""
    if row["status"] in ("unsupported", "oom"):
        raise NotImplementedError(f"{row['status']}: {row['error']}")
    if row["status"] == "ok" and row.get(column) is None:
        raise NotImplementedError(f"{column} is not measured on {row.get('device_name')}")


def row_figure(row: dict[str, Any], column: str, label: str) -> float:
    """One figure of a record; RuntimeError (asv marks the benchmark failed) for a failed run."""
    if row["status"] != "ok":
        raise RuntimeError(f"{label}: {row['status']}: {row['error']}")
    value = row.get(column)
    if value is None:
        raise RuntimeError(f"{label}: {column} missing from an ok record")
    return float(value)


def check_figure(cache: dict[str, dict[str, Any]], model: str, strategy: str, column: str) -> None:
    check_row(cache[f"{model}/{strategy}"], column)


def figure(cache: dict[str, dict[str, Any]], model: str, strategy: str, column: str) -> float:
    return row_figure(cache[f"{model}/{strategy}"], column, f"{model}/{strategy}")
