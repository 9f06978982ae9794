"""--compile under torchrun: compiled blocks (torchtitan's regional compilation) with single, ddp and
fsdp_full_shard on tiny in fp32 train like `single` uncompiled within the 16-bit tolerance of
tests/integration/test_knobs.py (1e-3): Inductor's fused kernels sum in another order than eager's.  The three
compile one block graph, so after the first run Inductor's cache serves the others.  The whole model compiled
(`--compile model`, a graph of its own and a cold compile of several minutes on 2 cores) is measured with loss
beside these in the recipes matrix (benchmarks/results/compile-cpu.md) rather than here, to keep the suite's
time.  Each run compiles in its warmup step, hence the longer timeout."""

from __future__ import annotations

import pytest

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run.presets import matrix
from harness.run.sweep import run_sweep

STRATEGIES = {"blocks": ("single", "ddp", "fsdp_full_shard")}
BASE = RunSpec(model="tiny", seq_len=32, warmup=1, memory_steps=1, steps=2)
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def runs() -> dict[str, Record]:
    """The reference (single, uncompiled) and every mode on every strategy, in one sweep."""
    specs, names = [BASE.with_(batch_size=4)], ["reference"]
    for mode, strategies in STRATEGIES.items():
        for spec in matrix(strategies, ["tiny"], 2, 4, BASE.with_(compile=mode)):
            specs.append(spec)
            names.append(f"{mode}, {spec.strategy}")
    return dict(zip(names, run_sweep(specs, store_path=None, show_progress=False), strict=True))


@pytest.mark.timeout(2400)
@pytest.mark.parametrize("case", [f"{m}, {s}" for m, names in STRATEGIES.items() for s in names])
def test_compiled_run_matches_single_uncompiled(runs: dict[str, Record], case: str) -> None:
    reference, record = runs["reference"], runs[case]
    assert reference.status == "ok" and record.status == "ok", record.error
    assert record.global_batch == reference.global_batch
    assert record.to_row()["compile"] == case.split(",")[0]
    assert record.loss == pytest.approx(reference.loss, rel=TOLERANCE)
