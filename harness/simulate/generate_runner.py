"""`spacetime simulate --workload generate`: the real generation loop under fake tensors and a fake process group.

One CPU process plays rank 0 of a world of any size: the zoo model loaded by the strategy's own
`wrap_generate` (single, ddp as replicas, fsdp_full_shard gathering block by block, tp with 1/tp of the kv
heads), then the measured run's phases (harness/train/generate_measure.py) on the tracker: the bytes after
loading (the prompts included, as a measured rank holds them), a short warm-up generation, then one
generation whose prefill and decode peaks are read apart, and the KV cache's bytes at its end.  Every figure is
absolute (weights included), as the record's are, and `peak_bytes` is the largest of them.

The loop (harness/models/generate.py) runs as it is: greedy or beam search, a static or a dynamic cache;
every decode step runs.  Quantized weights (`--quant`) are bitsandbytes' layers holding their bytes
(harness/simulate/quant_stand_ins.py) or torchao's own tensors, quantized from fake ones.  What fake tensors
cannot see, and what is done instead, is in
harness/simulate/phase_tracker.py and harness/simulate/cpu_scratch.py (a CPU target) and in
harness/simulate/stand_ins.py (the strategies).
"""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import dataclass
from typing import Any

from harness.core.errors import Unsupported
from harness.core.knobs import check_packages
from harness.core.progress import current
from harness.core.spec import RunSpec
from harness.core.torchao_choices import INT4_ON_CPU
from harness.simulate.runner import imports_set_aside

FIGURES = ("load_bytes", "prefill_peak_bytes", "decode_peak_bytes", "kv_cache_bytes")
CANNOT = {  # generation knobs the simulator cannot run, and why
    "quant=int4-torchao": f"{INT4_ON_CPU}, and a fake CUDA tensor cannot be made with a CPU build of torch",
    "quant=bitsandbytes-cuda": "bitsandbytes' CUDA kernels allocate what their fake kernels do not make (a 4-bit "
                               "prefill's dequantized weight, int8's quantized input and int32 product), which "
                               "no CPU build can measure; --device cpu simulates bitsandbytes' CPU kernels",
    "offload": "--offload disk writes the real weights to files and reads them back, which fake tensors lack",
}


@dataclass
class GenSimulation:
    spec: RunSpec
    figures: dict[str, int]  # FIGURES, bytes on rank 0
    context_bytes: int  # the CUDA context on a CUDA target, else 0
    seconds: float
    rss_peak_bytes: int

    @property
    def peak_bytes(self) -> int:
        """The largest of load, prefill and decode: a record's peak_bytes."""
        return max(self.figures[key] for key in FIGURES if key != "kv_cache_bytes")

    @property
    def device_bytes(self) -> int:
        return self.peak_bytes + self.context_bytes

    def to_json(self) -> dict[str, Any]:
        return {"workload": "generate", "peak_bytes": self.peak_bytes, "device_bytes": self.device_bytes,
                **self.figures, "context_bytes": self.context_bytes, "seconds": round(self.seconds, 3),
                "rss_peak_bytes": self.rss_peak_bytes}


def check_generation_simulable(spec: RunSpec, device: str | None = None) -> None:
    """Raise Unsupported for a strategy or knob the generation simulator cannot run on the `device` target
    (default: the spec's) before anything is built."""
    from strategies import get_strategy

    strategy = get_strategy(spec.strategy)
    if not strategy.generates:
        raise Unsupported(f"{spec.strategy} with --workload generate: {strategy.generate_why_not}")
    if strategy.simulate_why_not:
        raise Unsupported(f"cannot simulate {spec.strategy}: {strategy.simulate_why_not}")
    if spec.quant == "int4-torchao":
        raise Unsupported(f"cannot simulate --quant {spec.quant}: {CANNOT['quant=int4-torchao']}")
    if spec.quant in ("int8", "nf4") and (device or spec.device) == "cuda":
        raise Unsupported(f"cannot simulate --quant {spec.quant} on a CUDA target: {CANNOT['quant=bitsandbytes-cuda']}")
    if spec.offload != "none":
        raise Unsupported(f"cannot simulate --offload {spec.offload}: {CANNOT['offload']}")
    check_packages(spec)


def simulate_generation(spec: RunSpec, device: str = "cpu") -> GenSimulation:
    """Rank 0's load bytes, prefill and decode peaks and KV cache bytes for `spec` on `device`."""
    started = time.perf_counter()
    check_generation_simulable(spec, device)
    frozen_before = gc.get_freeze_count()
    current().show("simulate: import torch, its distributed stack and the strategy")
    with imports_set_aside():
        from harness.simulate.generate_run import generation_peaks
    try:
        figures = generation_peaks(spec, device)
    finally:
        current().clear()
        if not frozen_before:
            gc.unfreeze()
    context = figures.pop("context_bytes")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return GenSimulation(spec, figures, context, time.perf_counter() - started, rss)
