"""`spacetime strategies` and `spacetime zoo`: what can be run, and on which shapes."""

from __future__ import annotations

import argparse
from typing import Any

from harness.core.spec import RunSpec
from harness.report.columns import compact_table
from harness.report.console import console


def cmd_strategies(_: argparse.Namespace) -> int:
    from strategies import list_strategies

    table = compact_table()
    for col in ("strategy", "what it does", "shards / offloads", "estimate", "simulate"):
        table.add_column(col, no_wrap=col == "strategy")
    for s in list_strategies():
        table.add_row(s.name, s.description, s.shards, "yes" if has_memory_model(s) else "no",
                      "no" if s.simulate_why_not else "yes")
    console().print(table)
    return 0


def has_memory_model(strategy: Any) -> bool:
    """Whether `spacetime estimate` models the strategy (asked for a 2-rank spec)."""
    try:
        return strategy.memory_profile(RunSpec(strategy=strategy.name, nproc=2)) is not None
    except Exception:  # a plugin's profile may need a spec it validates first: it says so when estimated
        return False


def cmd_zoo(_: argparse.Namespace) -> int:
    from harness.models.zoo import ZOO

    table = compact_table()
    for col in ("model", "family", "params", "dim", "layers", "heads", "kv\nheads", "head\ndim", "ffn", "vocab",
                "tied", "run"):
        table.add_column(col, justify="left" if col in ("model", "family") else "right", no_wrap=True)
    for c in ZOO.values():
        table.add_row(c.name, c.family, f"{c.param_count():,}", str(c.dim), str(c.n_layers), str(c.n_heads),
                      str(c.n_kv_heads), str(c.head_dim), str(c.ffn_dim), f"{c.vocab_size:,}",
                      "yes" if c.tie_embeddings else "no", "yes" if c.measurable else "no")
    console().print(table)
    print("run no: a shape for estimate and simulate only (too large to measure on one host)")
    return 0
