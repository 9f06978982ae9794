"""simulate: the real training step under fake tensors and a fake process group (`spacetime simulate`).

One CPU process plays rank 0 of a world of any size: the zoo model, the strategy's own `wrap`, the real
optimizer and two steps run under a `FakeTensorMode` (shapes and dtypes, no storage; harness/simulate/fake_mode.py)
with the "fake" process group (collectives return at once).  torch's MemTracker follows every tensor
storage the step creates and frees and files it as a parameter, gradient, optimizer state, activation
(made in forward) or temporary (made in backward): FSDP's gathered parameters count as parameters, DDP's
buckets and reduce-scatter buffers as temporaries.  Two steps run; the peak is taken over the second, once
optimizer state exists, as the measured runs take theirs after warm-up.  (An optimizer step on zero
gradients instead of the first step saves 15% of the time but moves the peak by up to 0.45%: the first
real step leaves state behind that the second one's peak includes.)

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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from harness.core.errors import Unsupported
from harness.core.knobs import KNOBS, moved_knobs
from harness.core.memory import CATEGORIES, CUDA_CONTEXT_BYTES, PeakFigures
from harness.core.spec import RunSpec
from harness.simulate.stand_ins import outside_fake_mode
from harness.train.world import World

# MemTracker's categories -> the breakdown keys `estimate` uses
CATEGORY = {"Parameter": "params", "Buffer": "params", "Gradient": "grads", "Optstate": "optimizer",
            "Activation": "activations", "Temp": "temporaries", "Other": "temporaries"}
STEPS = 2
CANNOT = {  # knob values the simulator cannot run, and why
    "quant": "bitsandbytes quantizes real weights in its own CUDA/C++ kernels, which fake tensors cannot enter",
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

    def to_json(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "device_bytes": self.device_bytes,
                "breakdown": dict(self.breakdown), "seconds": round(self.seconds, 3),
                "rss_peak_bytes": self.rss_peak_bytes}


class FakeWorld(World):
    """Rank 0 of the fake process group, on the CPU; its meshes are built outside fake mode, as every other
    DeviceMesh is (stand_ins.real_meshes)."""

    def mesh(self, shape: tuple[int, ...], names: tuple[str, ...]) -> Any:
        return outside_fake_mode(super().mesh)(shape, names)


def check_simulable(spec: RunSpec) -> None:
    """Raise Unsupported for a strategy or knob the simulator cannot run (before anything is built)."""
    from strategies import get_strategy

    strategy = get_strategy(spec.strategy)
    if strategy.simulate_why_not:
        raise Unsupported(f"cannot simulate {spec.strategy}: {strategy.simulate_why_not}")
    moved = moved_knobs(spec)
    for key, reason in CANNOT.items():
        knob, _, value = key.partition("=")
        if knob in moved and (not value or moved[knob] == value):
            raise Unsupported(f"cannot simulate {KNOBS[knob][1]} {moved[knob]}: {reason}")


@contextmanager
def fake_world(spec: RunSpec) -> Iterator[FakeWorld]:
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RuntimeError("simulate needs a process of its own: a process group is already initialized")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=spec.nproc)
    try:
        yield FakeWorld(0, 0, spec.nproc, torch.device("cpu"), "fake")
    finally:
        dist.destroy_process_group()


def _breakdown(snapshot: dict[torch.device, dict[Any, int]], device: str) -> dict[str, int]:
    out = dict.fromkeys(CATEGORIES, 0)
    for per_device in snapshot.values():
        for kind, nbytes in per_device.items():
            name = getattr(kind, "value", kind)
            if name != "Total":
                out[CATEGORY.get(name, "temporaries")] += nbytes
    out["context"] = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    return out


_EXIT_FREEZE: list[Any] = []  # gc.freeze, once registered to run at exit


@contextmanager
def imports_frozen() -> Iterator[None]:
    """The garbage collector set to skip every object that exists now, for the simulation and again at exit.

    Once the simulation's imports are done, torch's modules hold about 240k objects that every full collection
    walks (0.3-0.7 s each on this project's CPU): a 7b step triggers several, and the interpreter runs more as it
    exits, 1-3 s in all.  `gc.freeze` moves them out of the collector's reach.  None of them is a tensor (the
    model is built after), so what a step frees, and when, is unchanged.  They return to the collector when the
    simulation ends, unless something had frozen objects before; at exit they are frozen again (the process is
    ending: they are not collected, modules are still torn down)."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    if not _EXIT_FREEZE:  # once per process, however many simulations run
        _EXIT_FREEZE.append(atexit.register(gc.freeze))
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()


def simulate(spec: RunSpec, device: str = "cpu") -> Simulation:
    """Rank 0's peak of one training step of `spec` on `device` ("cpu" or "cuda")."""
    started = time.perf_counter()  # the lazy imports below count: FSDP, DTensor and MemTracker take 2 s
    from harness.models.llama import build_model
    from harness.models.materialize import param_dtype
    from harness.models.zoo import config_for
    from harness.simulate.fake_mode import SimFakeMode
    from harness.simulate.stand_ins import adapt_ddp, stand_ins
    from harness.simulate.tracker import tracker_for
    from harness.train.optimizer import make_optimizer_factory
    from strategies import get_strategy

    check_simulable(spec)
    strategy = get_strategy(spec.strategy)
    with imports_frozen():
        cfg = config_for(spec)
        model = build_model(cfg, spec.seq_len).to(param_dtype(spec))  # meta, outside fake mode
        factory = make_optimizer_factory(spec, foreach=True if device == "cuda" else None)
        with fake_world(spec) as world, ExitStack() as stack:
            for stand_in in stand_ins(device):
                stack.enter_context(stand_in)
            stack.enter_context(SimFakeMode(allow_non_fake_inputs=True))
            prepared = strategy.wrap(model, factory, world, spec)
            adapt_ddp(prepared.model)
            rows = spec.batch_size * spec.grad_accum
            tokens = torch.randint(0, cfg.vocab_size, (rows, spec.seq_len + 1))
            batch = (tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())
            tracker = tracker_for(prepared.model, prepared.optimizer)
            for _ in range(STEPS):
                with tracker:  # entering resets the peak to what is live now
                    prepared.step(batch)
                tracker.reset_mod_stats()
            snapshot = tracker.get_tracker_snapshot("peak")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return Simulation(spec, _breakdown(snapshot, device), time.perf_counter() - started, rss)
