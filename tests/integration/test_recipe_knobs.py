"""The recipe knobs under torchrun: --loss chunked and --activation-checkpointing op, each with single, ddp and
fsdp_full_shard on tiny in fp32, train like `single` with the knob off (the 1e-4 tolerance of test_parity.py):
the chunked loss is the same mean, and op-level checkpointing recomputes exactly what it drops."""

from __future__ import annotations

import pytest

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run.presets import matrix
from harness.run.sweep import run_sweep

CASES: dict[str, dict[str, object]] = {"chunked loss": {"loss_type": "chunked", "loss_chunks": 4},
                                       "op checkpointing": {"activation_checkpointing": "op"}}
STRATEGIES = ("single", "ddp", "fsdp_full_shard")
BASE = RunSpec(model="tiny", seq_len=32, warmup=1, memory_steps=1, steps=2)


@pytest.fixture(scope="module")
def runs() -> dict[str, Record]:
    """The reference (single, knobs off) and every case on every strategy, in one sweep."""
    specs, names = [BASE.with_(batch_size=4)], ["reference"]
    for name, fields in CASES.items():
        for spec in matrix(STRATEGIES, ["tiny"], 2, 4, BASE.with_(**fields)):  # type: ignore[arg-type]
            specs.append(spec)
            names.append(f"{name}, {spec.strategy}")
    return dict(zip(names, run_sweep(specs, store_path=None, show_progress=False), strict=True))


@pytest.mark.parametrize("case", [f"{c}, {s}" for c in CASES for s in STRATEGIES])
def test_recipe_knob_matches_single_without_it(runs: dict[str, Record], case: str) -> None:
    reference, record = runs["reference"], runs[case]
    assert reference.status == "ok" and record.status == "ok", record.error
    assert record.global_batch == reference.global_batch
    assert record.loss == pytest.approx(reference.loss, rel=1e-4)
