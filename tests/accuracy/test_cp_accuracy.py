"""estimate against measurement for context parallelism (ring attention on the CPU): `cp` on 2 ranks at two
shapes and with full checkpointing, and `fsdp_cp` on 4 ranks (dp 2 x cp 2), on tiny in fp32.

The measured figures are in benchmarks/results/cp-accuracy-cpu.json (`python -m benchmarks.cp_accuracy`; the
machine is named in the file): each case's smallest per-rank peak over ranks and repeats.  Predictions are made
here, live.  `simulate` does not run context parallelism; the strategies say why.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.cp_accuracy import OUT, predicted, spec_of
from harness.core.errors import Unsupported
from harness.simulate.runner import check_simulable

CASES: dict[str, dict[str, Any]] = json.loads(OUT.read_text())["cases"]
BOUND = 0.05


def test_the_matrix_covers_cp_alone_and_under_fsdp_with_and_without_checkpointing() -> None:
    specs = [c["spec"] for c in CASES.values()]
    assert {s["strategy"] for s in specs} == {"cp", "fsdp_cp"}
    assert {s["activation_checkpointing"] for s in specs} == {"off", "full"}
    assert len({(s["batch_size"], s["seq_len"]) for s in specs if s["strategy"] == "cp"}) >= 2
    assert all(len(c["measured_per_rank"]) >= 2 for c in CASES.values())  # repeats


@pytest.mark.parametrize("name", sorted(CASES))
def test_predicted_within_5_percent(name: str) -> None:
    case = CASES[name]
    error = predicted(case["spec"]) / case["reference_bytes"] - 1
    assert abs(error) <= BOUND, f"{name}: predicted {error:+.2%}"


def test_simulate_says_it_does_not_run_context_parallelism() -> None:
    with pytest.raises(Unsupported, match="cannot simulate"):
        check_simulable(spec_of(next(iter(CASES.values()))["spec"]))
