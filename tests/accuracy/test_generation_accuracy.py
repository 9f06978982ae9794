"""The generation estimate against measurement over the CPU matrix: every strategy that generates x {fp32, bf16}
x {static, dynamic cache} x {greedy, 2 beams} on tiny at two batch/context shapes, 125m, and the int8/nf4
loads.  The measured figures are in benchmarks/results/generation-accuracy-cpu.json
(`python -m benchmarks.generation_accuracy`; the machine is named in the file); the estimates are made here,
live.  Every case is held to the bound; a miss is fixed in the model, not listed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.spec import RunSpec
from harness.estimate.generation import predict_generation
from harness.run.validate import validate

RESULTS = Path(__file__).parents[2] / "benchmarks" / "results" / "generation-accuracy-cpu.json"
CASES: dict[str, dict[str, Any]] = json.loads(RESULTS.read_text())["cases"]
BOUND = 0.05
PEAKS = ("load_bytes", "prefill_peak_bytes", "decode_peak_bytes")


def estimate(name: str) -> dict[str, Any]:
    spec = validate(RunSpec(**CASES[name]["spec"], workload="generate", device="cpu"), measure=False)
    return predict_generation(spec, "cpu").to_json()


def test_the_matrix_is_covered() -> None:
    """At least 24 cases; on tiny every strategy that generates with every dtype, cache kind and beam count."""
    assert len(CASES) >= 24
    tiny = {(c["spec"]["strategy"], c["spec"]["dtype"], c["spec"]["kv_cache"], c["spec"]["num_beams"])
            for c in CASES.values() if c["spec"]["model"] == "tiny" and c["spec"]["quant"] == "none"}
    for strategy in ("single", "ddp", "fsdp_full_shard"):
        for combo in [(d, k, b) for d in ("fp32", "bf16") for k in ("static", "dynamic") for b in (1, 2)]:
            assert (strategy, *combo) in tiny
    assert {c["spec"]["quant"] for c in CASES.values()} == {"none", "int8", "nf4"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_estimate_within_bound(name: str) -> None:
    """Load, prefill and decode peaks within 5% of measured; the KV cache's bytes exact."""
    measured, predicted = CASES[name]["measured"], estimate(name)
    assert predicted["kv_cache_bytes"] == measured["kv_cache_bytes"]
    errors = {key: predicted[key] / measured[key] - 1 for key in PEAKS}
    assert all(abs(e) <= BOUND for e in errors.values()), errors
