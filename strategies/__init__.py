"""The strategy registry, loaded lazily by name (in the style of torch dynamo's backend registry).

Built-ins are classes in this package registered with `@register("name", "description", **options)`; BUILTINS
maps each name to its module, so asking for `single` imports strategies/single.py and nothing else.
Third-party strategies come through the entry-point group `spacetime.strategies` (an entry point names a
Strategy subclass or instance) and are loaded only when asked for by name, or listed.  A plugin that fails to
load becomes a `Broken` strategy: listed with its error, and `unsupported` with that error when a run asks for
it, never a crash of other runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from harness.core.errors import Unsupported
from strategies import base
from strategies.base import Layout, Prepared, Strategy

if TYPE_CHECKING:
    from strategies.base import Batch, OptimizerFactory, make_step

__all__ = ["Batch", "Layout", "OptimizerFactory", "Prepared", "Strategy", "make_step", "register",
           "get_strategy", "list_strategies", "strategy_names", "ENTRY_POINT_GROUP", "BUILTINS"]

ENTRY_POINT_GROUP = "spacetime.strategies"
_FSDP1 = ("fsdp1_full_shard", "fsdp1_shard_grad_op", "fsdp1_hybrid_shard", "fsdp1_offload")
_ZERO = ("zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")
BUILTINS: dict[str, str] = {  # canonical order: listings, `--preset strategies` and asv follow it
    "single": "strategies.single", "ddp": "strategies.ddp",
    **{name: "strategies.fsdp" for name in ("fsdp_full_shard", "fsdp_shard_grad_op", "fsdp_hybrid_shard",
                                            "fsdp_offload")},
    "tp": "strategies.tp", "fsdp_tp": "strategies.tp", "tp_sp": "strategies.tp", "fsdp_tp_sp": "strategies.tp",
    "tp_async": "strategies.async_tp", "fsdp_tp_async": "strategies.async_tp",
    **{name: "strategies.context_parallel" for name in ("cp", "fsdp_cp", "fsdp_tp_cp")},
    **{name: "strategies.fsdp1" for name in _FSDP1},
    **{name: "strategies.deepspeed" for name in _ZERO},
    "accelerate_ddp": "strategies.accelerate", "accelerate_fsdp": "strategies.accelerate",
    **{name: "strategies.pipeline" for name in ("pp_gpipe", "pp_1f1b", "pp_interleaved", "pp_zb", "fsdp_pp",
                                                "fsdp_tp_pp")},
}
_REGISTRY: dict[str, Strategy] = {}


def __getattr__(name: str) -> Any:
    """The step helpers (`make_step`, `Batch`, `OptimizerFactory`) load torch: only when a plugin asks."""
    if name in base.STEP_HELPERS:
        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


S = TypeVar("S", bound=type[Strategy])


def register(name: str, description: str, **options: Any) -> Callable[[S], S]:
    """Class decorator: register `cls(name, description, **options)`; stack it for variants."""

    def decorator(cls: S) -> S:
        if BUILTINS.get(name, cls.__module__) != cls.__module__:
            raise ValueError(f"strategy {name!r} is the built-in in {BUILTINS[name]}")
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is registered twice")
        _REGISTRY[name] = cls(name, description, **options)
        return cls

    return decorator


class Broken(Strategy):
    """A plugin that failed to load: listed with its error; a run that asks for it is `unsupported`."""

    shards = "-"

    def __init__(self, name: str, error: str) -> None:
        super().__init__(name, f"failed to load: {error}")
        self.error = error
        self.simulate_why_not = self.description

    def check(self, spec: Any) -> None:
        raise Unsupported(f"plugin strategy {self.name} {self.description}")


@lru_cache(maxsize=1)
def _plugins() -> dict[str, EntryPoint]:
    """Entry points by name, not loaded; a built-in keeps its name, and the first plugin of a name wins."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTINS:
            found.setdefault(ep.name, ep)
    return found


def _load_plugin(ep: EntryPoint) -> Strategy:
    try:
        obj = ep.load()
        if ep.name in _REGISTRY:  # the plugin's module registered it with @register
            return _REGISTRY[ep.name]
        if isinstance(obj, type) and issubclass(obj, Strategy):
            obj = obj(ep.name, (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else "")
        if not isinstance(obj, Strategy):
            raise TypeError(f"{ep.value} is not a Strategy subclass or instance")
    except Exception as why:  # anything a third-party import can raise
        obj = Broken(ep.name, f"{ep.value}: {type(why).__name__}: {why}")
    obj.name = ep.name
    _REGISTRY[ep.name] = obj
    return obj


def strategy_names() -> list[str]:
    """Every name a run may ask for, in canonical order, without importing any strategy."""
    extra = [name for name in _REGISTRY if name not in BUILTINS]
    return list(dict.fromkeys([*BUILTINS, *extra, *_plugins()]))


def get_strategy(name: str) -> Strategy:
    """The strategy registered as `name`, importing only what defines it; KeyError for an unknown name."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in BUILTINS:
        importlib.import_module(BUILTINS[name])
        return _REGISTRY[name]
    if name in _plugins():
        return _load_plugin(_plugins()[name])
    raise KeyError(name)


def list_strategies() -> list[Strategy]:
    """Every strategy, built-ins and plugins loaded (a plugin that fails to load is listed as Broken)."""
    return [get_strategy(name) for name in strategy_names()]
