"""predict and simulate against measurement for the tensor-parallel variants: plain TP, sequence parallelism
(tp_sp), loss parallelism (--loss-parallel) and both, on tiny in fp32, bf16 and with checkpointing, on 2 ranks,
and under FSDP2 on 4 (dp 2 x tp 2).

The measured figures are in benchmarks/results/tp-accuracy-cpu.json (`python -m benchmarks.tp_accuracy`; the
machine is named in the file).  A case's reference is its smallest per-rank peak over ranks and repeats.
Predictions are made here, live; simulations are in the file, and two are re-run here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run.annotate import predicted_peak
from harness.run.validate import validate

RESULTS = Path(__file__).parents[2] / "benchmarks" / "results" / "tp-accuracy-cpu.json"
CASES: dict[str, dict[str, Any]] = json.loads(RESULTS.read_text())["cases"]
PREDICT_BOUND, SIMULATE_BOUND = 0.05, 0.01
LIVE = ("tiny-tp_sp-2r-bf16-ckpt-off", "tiny-fsdp_tp_sp-lp-4r-fp32-ckpt-off")  # re-simulated here


def spec_of(name: str) -> RunSpec:
    return validate(RunSpec(**CASES[name]["spec"], device="cpu", warmup=1, steps=1), measure=False)


def error(figure: int, name: str) -> float:
    return figure / CASES[name]["reference_bytes"] - 1


def test_the_matrix_covers_every_variant() -> None:
    seen = {(c["spec"]["strategy"], c["spec"]["loss_parallel"]) for c in CASES.values()}
    assert {("tp", False), ("tp_sp", False), ("tp", True), ("tp_sp", True), ("fsdp_tp_sp", False),
            ("fsdp_tp", True), ("fsdp_tp_sp", True)} <= seen
    knobs = {(c["spec"]["dtype"], c["spec"]["activation_checkpointing"]) for c in CASES.values()}
    assert {("fp32", "off"), ("bf16", "off"), ("fp32", "full")} <= knobs
    assert set(LIVE) <= set(CASES)
    for case in CASES.values():  # measured more than once
        assert len(case["measured_per_rank"]) >= 2


@pytest.mark.parametrize("name", sorted(CASES))
def test_predicted_peak_within_5_percent(name: str) -> None:
    predicted = predicted_peak(Record(spec_of(name), "ok"))
    assert predicted is not None
    assert abs(error(predicted, name)) <= PREDICT_BOUND, f"{name}: predicted {error(predicted, name):+.2%}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_simulation_within_1_percent(name: str) -> None:
    simulated = CASES[name]["simulated_bytes"]
    assert abs(error(simulated, name)) <= SIMULATE_BOUND, f"{name}: simulated {error(simulated, name):+.2%}"


@pytest.mark.parametrize("name", LIVE)
def test_simulation_still_gives_the_recorded_figure(name: str) -> None:
    from harness.simulate.runner import simulate

    assert simulate(spec_of(name), "cpu").peak_bytes == CASES[name]["simulated_bytes"]


def _pairs() -> list[tuple[str, str]]:
    """(plain TP case, the same shape with sequence and/or loss parallelism), without checkpointing: with it the
    peak falls where the blocks keep only their inputs and the logits are gone, and the variants save little."""
    out = []
    for name, case in CASES.items():
        spec = case["spec"]
        if spec["strategy"] == "tp" and not spec["loss_parallel"] and spec["activation_checkpointing"] == "off":
            out += [(name, other) for other in (name.replace("-tp-", "-tp_sp-"), name.replace("-tp-", "-tp-lp-"),
                                                name.replace("-tp-", "-tp_sp-lp-")) if other in CASES]
    return sorted(out)


@pytest.mark.parametrize(("plain", "variant"), _pairs())
def test_sequence_and_loss_parallelism_save_what_the_model_predicts(plain: str, variant: str) -> None:
    """The variant measures below plain TP at the same shape, and the bytes it saves are the bytes the model
    says it saves, within 5% of the saving."""
    measured = CASES[plain]["reference_bytes"] - CASES[variant]["reference_bytes"]
    predicted = predicted_peak(Record(spec_of(plain), "ok")) - predicted_peak(Record(spec_of(variant), "ok"))
    assert measured > 0
    assert measured == pytest.approx(predicted, rel=0.05)
