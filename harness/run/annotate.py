"""Predicted and simulated peaks beside a measured record (`run`/`sweep` with --predict and --simulate)."""

from __future__ import annotations

from typing import Any

from harness.core.errors import NotModelled
from harness.core.progress import current
from harness.core.record import FOLLOWER, Record

ERROR_COLUMNS = {"predicted": "predicted_peak_bytes", "simulated": "simulated_peak_bytes"}


def target_device(record: Record) -> str:
    """The device the figures are for: the one the run used (a validated spec names it)."""
    return "cuda" if record.spec.device == "cuda" else "cpu"


def annotate(record: Record, predict: bool, simulate: bool) -> Record:
    """Fill the record's predicted/simulated columns in place (a follower's record is left alone)."""
    if record.status == FOLLOWER:
        return record
    if predict:
        record.predicted_peak_bytes = predicted_peak(record)
    if simulate:  # a training step or a generation, as the record's workload says
        from harness.simulate.separate_process import simulated_peak

        current().show("simulate: the same spec under fake tensors, in a process of its own")
        record.simulated_peak_bytes, record.simulate_error = simulated_peak(record.spec, target_device(record))
    return record


def predicted_peak(record: Record, strict: bool = False) -> int | None:
    """`estimate`'s allocator peak for the record's spec; None where the strategy has no memory model or
    a knob is not modelled (harness/core/errors.py: NotModelled, raised instead when `strict`)."""
    try:
        return _predicted_peak(record)
    except NotModelled:
        if strict:
            raise
        return None


def _predicted_peak(record: Record) -> int | None:
    from harness.estimate.predict import predict
    from strategies import get_strategy

    if record.spec.workload == "generate":
        from harness.estimate.generation import predict_generation

        return predict_generation(record.spec, device=target_device(record)).peak_bytes
    profile = get_strategy(record.spec.strategy).memory_profile(record.spec)
    if profile is None:
        return None
    return predict(record.spec, profile, device=target_device(record)).peak_bytes


def relative_error(row: dict[str, Any], kind: str) -> float | None:
    """predicted or simulated over measured peak, minus one; None where either is missing."""
    figure, measured = row.get(ERROR_COLUMNS[kind]), row.get("peak_bytes")
    if figure is None or not measured:
        return None
    return float(figure) / float(measured) - 1.0
