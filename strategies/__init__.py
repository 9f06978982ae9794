"""Strategy registry: built-ins via `@register`, third-party plugins via the entry-point group
`spacetime.strategies` (an entry point names a Strategy subclass or instance), loaded on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from strategies.base import Batch, Layout, OptimizerFactory, Prepared, Strategy, make_step

__all__ = ["Batch", "Layout", "OptimizerFactory", "Prepared", "Strategy", "make_step", "register",
           "get_strategy", "list_strategies", "strategy_names", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "spacetime.strategies"
_BUILTINS = ("strategies.single", "strategies.ddp", "strategies.fsdp", "strategies.tp", "strategies.fsdp1",
             "strategies.deepspeed", "strategies.accelerate")
_REGISTRY: dict[str, Strategy] = {}
_loaded = False

S = TypeVar("S", bound=type[Strategy])


def register(name: str, description: str, **options: Any) -> Callable[[S], S]:
    """Class decorator: register `cls(name, description, **options)`; stack it for variants."""

    def decorator(cls: S) -> S:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is registered twice")
        # Stacked decorators run bottom-up: insert before the variants of `cls` registered by the
        # decorators below this one, so listings follow the order the names are written in.
        items = list(_REGISTRY.items())
        first = next((i for i, (_, s) in enumerate(items) if type(s) is cls), len(items))
        items.insert(first, (name, cls(name, description, **options)))
        _REGISTRY.clear()
        _REGISTRY.update(items)
        return cls

    return decorator


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTINS:
        importlib.import_module(module)
    # A module imported before this (a test, a script) registered early: list built-ins in _BUILTINS order.
    rank = {module: i for i, module in enumerate(_BUILTINS)}
    ordered = sorted(_REGISTRY.items(), key=lambda item: rank.get(type(item[1]).__module__, len(rank)))
    _REGISTRY.clear()
    _REGISTRY.update(ordered)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue  # a built-in or an earlier plugin keeps the name
        obj = ep.load()
        if isinstance(obj, type) and issubclass(obj, Strategy):
            obj = obj(ep.name, (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else "")
        if not isinstance(obj, Strategy):
            raise TypeError(f"entry point {ep.name!r} in {ENTRY_POINT_GROUP} is not a Strategy")
        obj.name = ep.name
        _REGISTRY[ep.name] = obj


def list_strategies() -> list[Strategy]:
    _load()
    return list(_REGISTRY.values())


def strategy_names() -> list[str]:
    return [s.name for s in list_strategies()]


def get_strategy(name: str) -> Strategy:
    _load()
    return _REGISTRY[name]
