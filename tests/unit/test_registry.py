"""The strategy registry: built-ins in canonical order and loaded by name, third-party plugins through entry
points, loaded lazily; a plugin that fails to load is listed with its error and never breaks another run."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from harness.core.errors import Unsupported
from harness.core.spec import RunSpec
from harness.run.validate import validate
from strategies import BUILTINS, ENTRY_POINT_GROUP, Strategy, get_strategy, list_strategies, register, strategy_names
from tests.helpers import spacetime

CORE = ["single", "ddp", "fsdp_full_shard", "fsdp_shard_grad_op", "fsdp_hybrid_shard", "fsdp_offload", "tp",
        "fsdp_tp"]


def test_builtins_in_canonical_order() -> None:
    assert strategy_names()[: len(CORE)] == CORE
    for name in CORE:
        strategy = get_strategy(name)
        assert strategy.name == name and strategy.description and strategy.shards


def test_plugin_registered_through_entry_point() -> None:
    names = strategy_names()
    assert {"plugin_ddp", "crash", "hang", "oom"} <= set(names)
    plugin = get_strategy("plugin_ddp")
    assert type(plugin).__module__ == "spacetime_testplugins"
    assert plugin.description.startswith("Third-party DDP")


def test_plugin_listed_by_the_cli_in_a_fresh_process() -> None:
    out = subprocess.run([sys.executable, "-m", "harness.cli", "strategies"], capture_output=True, text=True,
                         env=dict(os.environ), check=True).stdout
    assert "plugin_ddp" in out and "Third-party DDP" in out
    assert ENTRY_POINT_GROUP == "spacetime.strategies"
    assert "estimate" in out and "simulate" in out


def test_the_listing_says_which_strategies_estimate_and_simulate_model() -> None:
    from harness.cli.listings import has_memory_model

    assert has_memory_model(get_strategy("zero3")) and has_memory_model(get_strategy("fsdp_tp"))
    assert not has_memory_model(get_strategy("accelerate_fsdp"))
    assert get_strategy("fsdp_tp").simulate_why_not is None and get_strategy("zero3").simulate_why_not


def test_registering_a_name_twice_or_a_builtins_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import strategies

    monkeypatch.setattr(strategies, "_REGISTRY", dict(strategies._REGISTRY))  # left as it was afterwards
    register("stand_in", "a stand-in")(Strategy)
    with pytest.raises(ValueError, match="registered twice"):
        register("stand_in", "again")(Strategy)
    with pytest.raises(ValueError, match="is the built-in in strategies.deepspeed"):
        register("zero1", "a stand-in")(Strategy)


def test_each_builtin_module_registers_the_names_the_registry_maps_to_it() -> None:
    for module in set(BUILTINS.values()):
        importlib.import_module(module)
        registered = {s.name for s in list_strategies() if type(s).__module__ == module}
        assert registered == {name for name, home in BUILTINS.items() if home == module}, module


def test_asking_for_single_imports_single_alone() -> None:
    """No other strategy module and no plugin or framework package is imported to run `single`."""
    code = ("import sys; from strategies import get_strategy, strategy_names; names = strategy_names(); "
            "get_strategy('single'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('strategies', 'spacetime_testplugins', "
            "'deepspeed', 'accelerate', 'peft'))); print('broken' in names)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                         check=True).stdout.splitlines()
    assert out == ["['strategies', 'strategies.base', 'strategies.single']", "True"]


def test_a_plugin_that_fails_to_load_is_listed_and_unsupported_and_breaks_nothing() -> None:
    broken = get_strategy("broken")
    assert "failed to load" in broken.description and "planted" in broken.description
    with pytest.raises(Unsupported, match="^plugin strategy broken failed to load: spacetime_testplugins.broken"):
        validate(RunSpec(strategy="broken"))
    listing = spacetime("strategies")
    assert listing.returncode == 0 and "broken" in listing.stdout and "plugin_ddp" in listing.stdout
    run = spacetime("run", "--strategy", "broken", "--no-store", "--json")
    record = json.loads(run.stdout.strip().splitlines()[-1])
    assert run.returncode == 1 and record["status"] == "unsupported" and "planted" in record["error"]
    assert spacetime("run", "--strategy", "single", "--dry-run").returncode == 0
