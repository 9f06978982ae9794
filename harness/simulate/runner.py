"""simulate: the real training step under fake tensors and a fake process group (`spacetime simulate`).

One CPU process plays rank 0 of a world of any size (a pipeline: each pipeline rank in turn, as the stages differ;
harness/simulate/pipeline_stand_ins.py gives a rank what its neighbours would have sent): the zoo model, the
strategy's own `wrap`, the real optimizer and two steps run under a `FakeTensorMode` (shapes and dtypes, no storage;
harness/simulate/fake_mode.py) with the "fake" process group (collectives return at once).  torch's MemTracker
follows every tensor storage the step creates and frees and files it by `estimate`'s categories (docs/estimate.md,
"What each category holds"): DDP's buckets and FSDP's gathered parameters and reduce-scatter buffers are
communication.  Two steps run; the peak is taken over the second, once optimizer state exists, as the measured runs
take theirs after warm-up.  (An optimizer step on zero gradients instead of the first step saves 15% of the time but
moves the peak by up to 0.45%: the first real step leaves state behind that the second one's peak includes.)

What fake tensors cannot run, and what is done instead, is in harness/simulate/stand_ins.py; the tracker is in
harness/simulate/tracker.py.  Parameters are allocated but not filled (models/materialize.py): fake tensors hold no
values.
A CUDA target (`device="cuda"`) is simulated on fake CPU tensors with CUDA's differences applied: each
allocation rounded up to 512 bytes, AdamW's foreach implementation (CUDA's default), and the CUDA context.
"""

from __future__ import annotations

import atexit
import gc
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.core.errors import Unsupported
from harness.core.knobs import KNOBS, check_packages, moved_knobs
from harness.core.memory import PeakFigures
from harness.core.progress import current
from harness.core.spec import RunSpec
from harness.simulate.compile_check import check_compile
from strategies import get_strategy

CANNOT = {  # knob values the simulator cannot run, and why
    "optimizer=adamw8bit": "torchao's 8-bit AdamW quantizes state blocks through real data",
    "optimizer=adafactor": "torch's Adafactor reads a value on the host each step (.item()), which fake tensors lack",
    "dtype=fp16": "the gradient scaler skips or takes each step from an inf check it reads on the host",
}


@dataclass
class Simulation(PeakFigures):
    spec: RunSpec
    breakdown: dict[str, int]  # bytes per rank at the peak, by `estimate`'s categories
    seconds: float
    rss_peak_bytes: int  # this process's high-water mark (imports included)
    # a pipeline's: (global rank simulated, its breakdown) per pipeline rank; `breakdown` is the largest's
    stages: list[tuple[int, dict[str, int]]] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"peak_bytes": self.peak_bytes, "device_bytes": self.device_bytes,
               "breakdown": dict(self.breakdown), "seconds": round(self.seconds, 3),
               "rss_peak_bytes": self.rss_peak_bytes}
        return out | (pipeline_json(self.spec, self.stages) if self.stages is not None else {})


def pipeline_json(spec: RunSpec, stages: list[tuple[int, dict[str, int]]]) -> dict[str, Any]:
    """A pipeline's figures as a measured pipeline record names them: mesh_pp, every rank's peak (each rank
    its pipeline rank's: replicas and shards of a stage hold the same), and per pipeline rank its breakdown."""
    peaks = [sum(v for k, v in b.items() if k != "context") for _, b in stages]
    per = spec.nproc // len(stages)
    return {"mesh_pp": len(stages), "stage_peak_bytes": peaks, "peak_bytes_per_rank": [p for p in peaks
                                                                                      for _ in range(per)],
            "stages": [{"pp_rank": i, "rank": rank, "peak_bytes": peaks[i], "breakdown": dict(b)}
                       for i, (rank, b) in enumerate(stages)]}


def check_simulable(spec: RunSpec) -> None:
    """Raise Unsupported for a strategy or knob the simulator cannot run (before anything is built)."""
    strategy = get_strategy(spec.strategy)
    if strategy.simulate_why_not:
        raise Unsupported(f"cannot simulate {spec.strategy}: {strategy.simulate_why_not}")
    moved = moved_knobs(spec)
    for key, reason in CANNOT.items():
        knob, _, value = key.partition("=")
        if knob in moved and (not value or moved[knob] == value):
            raise Unsupported(f"cannot simulate {KNOBS[knob][1]} {moved[knob]}: {reason}")
    check_packages(spec)  # the knobs simulate runs need their packages, as a measured run does
    check_compile(spec)  # NotModelled: Inductor under fake tensors (compile_check.py)


_EXIT_FREEZE: list[Any] = []  # gc.freeze, once registered to run at exit


@contextmanager
def imports_set_aside() -> Iterator[None]:
    """The garbage collector off while the body imports, and what the imports made frozen out of its reach
    (`gc.freeze`) before it is back on, and again at exit.

    torch and its distributed stack make about 240k objects.  Left to the collector, the collections their
    growth triggers walk them again and again (a third of the imports' time on this project's CPU), every full
    collection of a 7b step walks them (0.3-0.7 s each), and the interpreter walks them again as it exits: 1-3 s
    in all.  None of them is a tensor (the model is built after), so what a step frees, and when, is unchanged;
    what garbage the imports leave waits until the caller unfreezes them (`simulate` does, once done).  The
    freeze at exit is registered once per process, however many simulations run (the process is ending:
    nothing is collected, modules are still torn down)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if not _EXIT_FREEZE:
            _EXIT_FREEZE.append(atexit.register(gc.freeze))
        if enabled:
            gc.enable()


def simulate(spec: RunSpec, device: str = "cpu") -> Simulation:
    """Rank 0's peak of one training step of `spec` on `device` ("cpu" or "cuda"); for a pipeline each pipeline
    rank's, and the largest as the simulation's."""
    started = time.perf_counter()  # the imports below count: torch, FSDP, DTensor, MemTracker and dynamo
    check_simulable(spec)
    frozen_before = gc.get_freeze_count()
    current().show("simulate: import torch, its distributed stack and the strategy")
    with imports_set_aside():
        from harness.simulate.fake_run import peak_breakdown, simulated_ranks
    try:
        stages = [(rank, peak_breakdown(spec, device, rank)) for rank in simulated_ranks(spec)]
    finally:
        current().clear()
        if not frozen_before:  # what existed before is the collector's again (unless something else froze it)
            gc.unfreeze()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    breakdown = max((b for _, b in stages), key=lambda b: sum(v for k, v in b.items() if k != "context"))
    pipelined = getattr(get_strategy(spec.strategy), "pipelines", False)
    return Simulation(spec, breakdown, time.perf_counter() - started, rss, stages if pipelined else None)
