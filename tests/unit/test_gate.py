"""The regression gate's tolerances: they follow the records' own noise (time) and stay tight (memory)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.run.gate import compare_case


def _row(p50: float, p10: float, p90: float, peak: int = 1000) -> dict[str, Any]:
    return {"status": "ok", "peak_bytes": peak, "reserved_peak_bytes": None, "step_s_p50": p50,
            "step_s_p10": p10, "step_s_p90": p90}


def test_time_tolerance_widens_with_the_records_spread() -> None:
    quiet = compare_case("c", [_row(1.0, 0.99, 1.01)], [_row(1.15, 1.14, 1.16)])
    assert [c.verdict for c in quiet if c.figure == "step_s_p50"] == ["regression"]  # 15% > 10% floor
    noisy = compare_case("c", [_row(1.0, 0.8, 1.2)], [_row(1.15, 0.95, 1.35)])
    time = next(c for c in noisy if c.figure == "step_s_p50")
    assert time.verdict == "same" and time.tolerance == pytest.approx(2 * 0.4 / 1.0)
    repeats = compare_case("c", [_row(1.0, 0.99, 1.01), _row(1.2, 1.19, 1.21)], [_row(1.25, 1.24, 1.26)])
    assert next(c for c in repeats if c.figure == "step_s_p50").verdict == "same"


def test_memory_tolerance_is_tight_and_uses_repeat_ranges() -> None:
    assert [c.verdict for c in compare_case("c", [_row(1, 1, 1, 10**9)], [_row(1, 1, 1, 1_020_000_000)])
            if c.figure == "peak_bytes"] == ["regression"]  # +2% > 1%
    ranged = compare_case("c", [_row(1, 1, 1, 10**9), _row(1, 1, 1, 1_030_000_000)],
                          [_row(1, 1, 1, 1_030_000_000)])
    assert next(c for c in ranged if c.figure == "peak_bytes").verdict == "same"
    better = compare_case("c", [_row(1, 1, 1, 10**9)], [_row(1, 1, 1, 900_000_000)])
    assert next(c for c in better if c.figure == "peak_bytes").verdict == "improved"


def _generated(p50: float, p10: float, p90: float, load: int = 10**9) -> dict[str, Any]:
    return {"status": "ok", "workload": "generate", "peak_bytes": 2 * load, "reserved_peak_bytes": None,
            "load_bytes": load, "decode_peak_bytes": 2 * load, "step_s_p50": None, "step_s_p10": None,
            "step_s_p90": None, "decode_s_per_token_p50": p50, "decode_s_per_token_p10": p10,
            "decode_s_per_token_p90": p90}


def test_generate_records_are_gated_on_seconds_per_token_and_load_bytes() -> None:
    slower = compare_case("g", [_generated(0.1, 0.099, 0.101)], [_generated(0.12, 0.119, 0.121)])
    assert {c.figure: c.verdict for c in slower} == {"peak_bytes": "same", "load_bytes": "same",
                                                     "decode_peak_bytes": "same",
                                                     "decode_s_per_token_p50": "regression"}
    noisy = compare_case("g", [_generated(0.1, 0.08, 0.12)], [_generated(0.115, 0.095, 0.135)])
    time = next(c for c in noisy if c.figure == "decode_s_per_token_p50")
    assert time.verdict == "same" and time.tolerance == pytest.approx(2 * 0.4)
    heavier = compare_case("g", [_generated(0.1, 0.1, 0.1)], [_generated(0.1, 0.1, 0.1, load=2 * 10**9)])
    assert {c.figure: c.verdict for c in heavier}["load_bytes"] == "regression"
    one_token = _generated(0.1, 0.1, 0.1) | {"decode_s_per_token_p50": None, "decode_s_per_token_p10": None,
                                             "decode_s_per_token_p90": None}
    assert [c.figure for c in compare_case("g", [one_token], [one_token])] == ["peak_bytes", "load_bytes",
                                                                               "decode_peak_bytes"]
