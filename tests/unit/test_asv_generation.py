"""The asv suite's generation benchmarks: discovery launches nothing, the runs are generate specs on the preset's
first model, every track_ is a lower-is-better figure of the record, and a run that could not be done is skipped."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SPACETIME_ASV_PRESET", "cpu")
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.bench_generate as module

    return importlib.reload(module)


def test_the_generate_benchmark_measures_generation_of_tiny_per_cache_kind(bench: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[dict[str, Any]] = []

    def measure(specs: dict[str, Any]) -> dict[str, dict[str, Any]]:
        launched.append(specs)
        return {label: {"status": "ok", "error": None, "load_bytes": 10 + i, "decode_peak_bytes": 20 + i,
                        "ttft_s": 0.5 + i, "decode_s_per_token_p50": 0.25 + i} for i, label in enumerate(specs)}

    monkeypatch.setattr(bench, "measure_specs", measure)
    suite = bench.Generate()
    assert suite.params == (["static", "dynamic"],) and launched == []  # discovery launches nothing
    cache = suite.setup_cache()
    (specs,) = launched
    for kind, spec in specs.items():
        assert (spec.workload, spec.model, spec.strategy, spec.kv_cache) == ("generate", "tiny", "single", kind)
    for i, kind in enumerate(suite.params[0]):
        suite.setup(cache, kind)
        assert suite.track_load_bytes(cache, kind) == 10 + i
        assert suite.track_decode_peak_bytes(cache, kind) == 20 + i
        assert suite.track_time_to_first_token(cache, kind) == 0.5 + i
        assert suite.track_seconds_per_token(cache, kind) == 0.25 + i


def test_every_generation_track_has_a_lower_is_better_unit(bench: Any) -> None:
    tracks = {name: fn for name, fn in vars(bench.Generate).items() if name.startswith("track_")}
    assert set(tracks) == {"track_load_bytes", "track_decode_peak_bytes", "track_time_to_first_token",
                           "track_seconds_per_token"}
    assert {fn.unit for fn in tracks.values()} == {"bytes", "seconds"}


def test_a_generation_that_could_not_run_is_skipped_and_a_failed_one_fails(bench: Any) -> None:
    suite = bench.Generate()
    cache = {"static": {"status": "unsupported", "error": "no"}, "dynamic": {"status": "error", "error": "boom"}}
    with pytest.raises(NotImplementedError):
        suite.setup(cache, "static")
    suite.setup(cache, "dynamic")
    with pytest.raises(RuntimeError, match="boom"):
        suite.track_load_bytes(cache, "dynamic")
