"""The asv suite: parameters come from the registry and zoo, discovery launches nothing, every track_ has a
unit, the classes share one setup_cache, and unsupported/failed runs map to asv's skip/fail."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from strategies import strategy_names

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def suite(monkeypatch: pytest.MonkeyPatch) -> Any:
    import harness.run.launch

    def no_launch(*args: object, **kwargs: object) -> None:
        raise AssertionError("importing the asv suite launched a run")

    monkeypatch.setattr(harness.run.launch, "launch", no_launch)
    monkeypatch.setenv("SPACETIME_ASV_PRESET", "cpu")
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.bench_strategies as module

    return importlib.reload(module)


def test_levers_benchmark_takes_its_rows_from_the_sweep_preset(suite: Any) -> None:
    import benchmarks.bench_knobs as knobs
    from harness.run.presets import plan

    knobs = importlib.reload(knobs)
    specs = list(knobs._SPECS.values())
    assert specs == plan("levers", specs[0].with_(dtype="fp32"), models=("tiny",), seq_len=256)
    assert knobs.Levers.params[0][0] == "baseline" and len(knobs.Levers.params[0]) == len(specs)
    assert knobs.Levers.track_peak_bytes.unit == "bytes"


def _classes(module: Any) -> list[type]:
    return [c for _, c in inspect.getmembers(module, inspect.isclass)
            if any(n.startswith("track_") for n in vars(c))]


def test_params_follow_registry_and_preset(suite: Any) -> None:
    classes = _classes(suite)
    assert {c.__name__ for c in classes} == {"TrainStep", "DeviceMemory", "Utilisation"}
    for cls in classes:
        assert cls.params == (["tiny"], strategy_names())  # plugins included, in registry order
        assert cls.param_names == ("model", "strategy")
        assert cls.setup_cache is suite._Measured.setup_cache  # one asv cache key: one run per parameter set
        assert cls.timeout >= 300


def test_every_track_has_a_lower_is_better_unit(suite: Any) -> None:
    tracks = {name: fn for cls in _classes(suite) for name, fn in vars(cls).items() if name.startswith("track_")}
    assert set(tracks) >= {"track_peak_bytes", "track_rss_peak_bytes", "track_step_seconds",
                           "track_seconds_per_token", "track_reserved_bytes", "track_device_used_bytes",
                           "track_mfu_loss"}
    assert all(fn.unit in ("bytes", "seconds", "fraction") for fn in tracks.values())
    assert not any("tokens_per_s" in name for name in tracks)  # a higher-is-better figure has no place in asv


def _row(status: str, **figures: Any) -> dict[str, Any]:
    return {"status": status, "error": "why" if status != "ok" else None, "device_name": "AMD EPYC", **figures}


def test_setup_skips_what_cannot_run_and_figures_fail_on_failed_runs(suite: Any) -> None:
    from benchmarks.common import check_figure, figure

    cache = {"tiny/a": _row("ok", peak_bytes=10, mfu=None), "tiny/b": _row("unsupported"),
             "tiny/c": _row("oom"), "tiny/d": _row("error")}
    check_figure(cache, "tiny", "a", "peak_bytes")
    assert figure(cache, "tiny", "a", "peak_bytes") == 10.0
    for strategy, column in (("a", "mfu"), ("b", "peak_bytes"), ("c", "peak_bytes")):
        with pytest.raises(NotImplementedError):  # asv: skipped, n/a
            check_figure(cache, "tiny", strategy, column)
    check_figure(cache, "tiny", "d", "peak_bytes")  # a crash is not skipped ...
    with pytest.raises(RuntimeError, match="error"):  # ... its benchmarks fail
        figure(cache, "tiny", "d", "peak_bytes")


def test_unknown_preset_names_the_variable_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.common import preset

    monkeypatch.setenv("SPACETIME_ASV_PRESET", "laptop")
    with pytest.raises(ValueError, match="SPACETIME_ASV_PRESET='laptop': valid: cpu, gpu"):
        preset()
    monkeypatch.setenv("SPACETIME_ASV_PRESET", "gpu")
    assert preset().models == ("1b", "3b", "7b", "8b")


def test_asv_check_discovers_the_suite() -> None:
    result = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "SPACETIME_ASV_PRESET": "cpu"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TrainStep.track_peak_bytes" in result.stdout or "Discovering benchmarks" in result.stdout


def test_overhead_benchmark_launches_at_setup_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.overhead as overhead

    calls: list[Any] = []

    def job(args: Any) -> dict[str, Any]:
        calls.append(args)
        return {"strategies": {name: {"ratio_p50": 1.0 + i / 100} for i, name in enumerate(overhead.STRATEGIES)}}

    monkeypatch.setattr(overhead, "run_job", job)
    monkeypatch.setenv("SPACETIME_ASV_PRESET", "cpu")
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.bench_overhead as module

    module = importlib.reload(module)
    assert calls == []  # discovery launches nothing
    bench = module.HarnessOverhead()
    assert bench.params == (list(overhead.STRATEGIES),) and bench.track_overhead_fraction.unit == "fraction"
    cache = bench.setup_cache()
    (args,) = calls
    assert (args.model, args.device, args.nproc) == ("125m", "cpu", 2)
    fractions = [bench.track_overhead_fraction(cache, name) for name in overhead.STRATEGIES]
    assert fractions == [pytest.approx(i / 100) for i in range(len(overhead.STRATEGIES))]
