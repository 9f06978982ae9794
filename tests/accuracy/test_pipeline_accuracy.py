"""estimate and simulate against measurement for the pipeline strategies, stage by stage: GPipe, 1F1B,
interleaved 1F1B and zero bubble (ZB1P) on 2 and 4 ranks with 2, 4 and 8 micro-batches, and FSDP2 inside a
pipeline (fsdp_pp), on tiny.

The measured figures are in benchmarks/results/pipeline-accuracy-cpu.json (`python -m benchmarks.pipeline_accuracy`;
the machine is named in the file): each pipeline rank's peak, the smallest over the ranks holding the same
stages.  Predictions and simulations (one fake rank per pipeline rank) are made here, live, from each case's spec.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.pipeline_accuracy import OUT, predicted, simulated

CASES: dict[str, dict[str, Any]] = json.loads(OUT.read_text())["cases"]
BOUND = 0.05
SIMULATE_BOUND = 0.01


def _case_spec(name: str) -> dict[str, Any]:
    return {k: v for k, v in CASES[name]["spec"].items() if k not in ("model", "seq_len", "batch_size")}


def test_the_matrix_covers_every_schedule_and_a_growing_micro_batch_count() -> None:
    specs = [c["spec"] for c in CASES.values()]
    assert {s["strategy"] for s in specs} >= {"pp_gpipe", "pp_1f1b", "pp_interleaved", "pp_zb", "fsdp_pp"}
    for strategy in ("pp_gpipe", "pp_1f1b"):  # the same ranks at two micro-batch counts
        assert len({s["pp_microbatches"] for s in specs if s["strategy"] == strategy and s["nproc"] == 4}) >= 2
    assert sum(len(c["stage_peak_bytes"]) for c in CASES.values()) >= 20


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_stage_predicted_within_5_percent(name: str) -> None:
    measured = CASES[name]["stage_peak_bytes"]
    stages = predicted(_case_spec(name))
    assert len(stages) == len(measured)
    errors = [p / m - 1 for p, m in zip(stages, measured, strict=True)]
    assert max(abs(e) for e in errors) <= BOUND, f"{name}: " + ", ".join(f"{e:+.2%}" for e in errors)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_stage_simulated_within_1_percent(name: str) -> None:
    measured, spec = CASES[name]["stage_peak_bytes"], _case_spec(name)
    stages = simulated(spec)
    assert len(stages) == len(measured)
    errors = [s / m - 1 for s, m in zip(stages, measured, strict=True)]
    assert max(abs(e) for e in errors) <= SIMULATE_BOUND, f"{name}: " + ", ".join(f"{e:+.2%}" for e in errors)
