"""The generation estimate and simulation against measurement over the CPU matrix: every strategy that generates x
{fp32, bf16} x {static, dynamic cache} x {greedy, 2 beams} on tiny at two batch/context shapes, 125m, and the
int8/nf4 loads.  The measured figures are in benchmarks/results/generation-accuracy-cpu.json
(`python -m benchmarks.generation_accuracy`; the machine is named in the file); the estimates are made here,
live; the simulated figures are stored beside the measured ones (`--simulated`: `spacetime simulate --workload
generate` of each case; a minute or two each on a loaded 2-core machine, too slow to make here), and a few cases
are simulated here again, live, to hold the stored figures to the code.  Every case is held to the bound; a miss
is fixed in the model, not listed here.  The quantized loads (bitsandbytes' int8 and nf4, torchao's weight-only
int8 and NF4Tensor) are simulated as the others are; zero3 (DeepSpeed's engine) is not, and says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.spec import RunSpec
from harness.estimate.generation import predict_generation
from harness.run.validate import validate
from harness.simulate.generate_runner import FIGURES
from strategies import get_strategy

RESULTS = Path(__file__).parents[2] / "benchmarks" / "results" / "generation-accuracy-cpu.json"
CASES: dict[str, dict[str, Any]] = json.loads(RESULTS.read_text())["cases"]
BOUND = 0.05
SIMULATE_BOUND = 0.01
PEAKS = ("load_bytes", "prefill_peak_bytes", "decode_peak_bytes")


def estimate(name: str) -> dict[str, Any]:
    spec = validate(RunSpec(**CASES[name]["spec"], workload="generate", device="cpu"), measure=False)
    return predict_generation(spec, "cpu").to_json()


def test_the_matrix_is_covered() -> None:
    """At least 24 cases; on tiny every strategy that generates with every dtype, cache kind and beam count."""
    assert len(CASES) >= 24
    tiny = {(c["spec"]["strategy"], c["spec"]["dtype"], c["spec"]["kv_cache"], c["spec"]["num_beams"])
            for c in CASES.values() if c["spec"]["model"] == "tiny" and c["spec"]["quant"] == "none"}
    for strategy in ("single", "ddp", "fsdp_full_shard", "zero3"):
        for combo in [(d, k, b) for d in ("fp32", "bf16") for k in ("static", "dynamic") for b in (1, 2)]:
            assert (strategy, *combo) in tiny
    assert {c["spec"]["quant"] for c in CASES.values()} == {"none", "int8", "nf4", "int8-torchao", "nf4-torchao"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_estimate_within_bound(name: str) -> None:
    """Load, prefill and decode peaks within 5% of measured; the KV cache's bytes exact."""
    measured, predicted = CASES[name]["measured"], estimate(name)
    assert predicted["kv_cache_bytes"] == measured["kv_cache_bytes"]
    errors = {key: predicted[key] / measured[key] - 1 for key in PEAKS}
    assert all(abs(e) <= BOUND for e in errors.values()), errors


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulate_within_bound(name: str) -> None:
    """Load, prefill and decode peaks within 1% of measured, the KV cache's bytes exact; zero3 says it is not
    simulated and why."""
    case = CASES[name]
    simulated = case["simulated"]
    if case["spec"]["strategy"] == "zero3":  # DeepSpeed's engine under fake tensors: refused, with the reason
        assert simulated == {"not_simulated": f"spacetime: unsupported: cannot simulate zero3: "
                                              f"{get_strategy('zero3').simulate_why_not}"}
        return
    assert set(simulated) == set(FIGURES)
    assert simulated["kv_cache_bytes"] == case["measured"]["kv_cache_bytes"]
    errors = {key: simulated[key] / case["measured"][key] - 1 for key in PEAKS}
    assert all(abs(e) <= SIMULATE_BOUND for e in errors.values()), errors


@pytest.mark.parametrize("name", ["tiny-single-bf16-dynamic-b2-2x64+8", "tiny-fsdp_full_shard-fp32-static-b2-4x128+16",
                                  "tiny-ddp-bf16-static-b1-2x64+8", "tiny-single-bf16-int8-static-b1-2x64+8",
                                  "tiny-single-fp32-int8-torchao-static-b1-2x64+8"])
def test_stored_simulation_is_the_codes_and_every_step_in_full_agrees(name: str) -> None:
    """The stored figures are what simulate gives now, and the same as running every decode step's blocks in
    full (harness/simulate/decode_steps.py)."""
    from harness.simulate.generate_run import generation_peaks

    spec = validate(RunSpec(**CASES[name]["spec"], workload="generate", device="cpu"), measure=False)
    stepped, full = generation_peaks(spec, "cpu"), generation_peaks(spec, "cpu", ends=None)
    assert stepped == full
    assert {key: stepped[key] for key in FIGURES} == CASES[name]["simulated"]
