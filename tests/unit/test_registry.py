"""The strategy registry: built-ins in canonical order, third-party plugins through entry points."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from strategies import ENTRY_POINT_GROUP, Strategy, get_strategy, register, strategy_names

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


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register("ddp", "again")(Strategy)
