"""predict and simulate against measurement for the recipe knobs (issue: chunked loss, compile, op-level
checkpointing, quantized bases): benchmarks/results/accuracy-recipes-cpu.json, built with
`python -m benchmarks.recipes_accuracy add STORES` (the machine is named in the file).

Predictions are made here, live, and must be within 5% of the reference (the smallest per-rank peak over ranks
and repeats), or not modelled with the same reason the file gives.  Simulations are in the file and must be
within 1%, or not modelled with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.errors import NotModelled
from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run.annotate import predicted_peak
from harness.run.validate import validate

RESULTS = Path(__file__).parents[2] / "benchmarks" / "results" / "accuracy-recipes-cpu.json"
CASES: dict[str, dict[str, Any]] = json.loads(RESULTS.read_text())["cases"]
PREDICT_BOUND, SIMULATE_BOUND = 0.05, 0.01
# each recipe knob value the matrix must hold at least one measured case of
COVERED: tuple[tuple[str, Any], ...] = (("quant", "int8"), ("quant", "nf4"), ("quant", "nf4-torchao"),
                                         ("compile", "blocks"),
                                         ("compile", "model"), ("loss_type", "chunked"),
                                         ("activation_checkpointing", "op"))


def spec_of(name: str) -> RunSpec:
    return validate(RunSpec(**CASES[name]["spec"], device="cpu"), measure=False)


@pytest.mark.parametrize(("knob", "value"), COVERED)
def test_the_matrix_holds_each_recipe_knob(knob: str, value: Any) -> None:
    assert any(case["spec"].get(knob) == value for case in CASES.values()), (knob, value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_predicted_within_5_percent_or_not_modelled(name: str) -> None:
    case = CASES[name]
    try:
        figure = predicted_peak(Record(spec_of(name), "ok"), strict=True)
    except NotModelled as why:
        assert case["predicted_why_not"] == str(why), "the file and the model disagree: rebuild the matrix"
        return
    assert figure is not None
    assert abs(figure / case["reference_bytes"] - 1) <= PREDICT_BOUND, (figure, case["reference_bytes"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulated_within_1_percent_or_not_modelled(name: str) -> None:
    case = CASES[name]
    if case["simulated_bytes"] is None:
        assert case["simulated_why_not"], "a case without a simulated figure names why"
        return
    assert abs(case["simulated_bytes"] / case["reference_bytes"] - 1) <= SIMULATE_BOUND
