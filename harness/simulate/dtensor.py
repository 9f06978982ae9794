"""DTensor's sharding propagation under `simulate`: a fake mode of its own, and foreach ops in linear time.

A foreach op over n DTensors (AdamW's first step over a model's parameters) is propagated element by
element; torch re-reads the whole argument list for each element and expands each element's strategy over
the mesh from scratch.  The changes here reach the same strategies once per distinct element; none changes
what a step allocates (tests/test_simulate.py runs both and compares every figure).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any


def _strided_verdict(op_schema: Any) -> Any:
    """A one-argument stand-in for a foreach op's schema, carrying the _StridedShard flag that torch's loop
    over every argument of the op ends with (None when no argument has a _StridedShard placement)."""
    from torch.distributed.tensor.placement_types import _StridedShard

    verdict, placements = None, None
    for spec in op_schema.args_spec:
        if any(isinstance(p, _StridedShard) for p in spec.placements):
            flag = spec.use_strided_shard_as_shard_order  # torch's own reduction, step by step
            verdict = True if verdict is not None and verdict != flag else flag
            placements = spec.placements
    if verdict is None:
        return None
    return SimpleNamespace(args_spec=(SimpleNamespace(placements=placements,
                                                      use_strided_shard_as_shard_order=verdict),))


def _once_per_op(reconcile: Any) -> Any:
    last: list[Any] = [None, None]  # the op schema seen last, and its verdict

    def strided_flag(op_strategy: Any, op_schema: Any) -> None:
        if last[0] is not op_schema:
            last[:] = [op_schema, _strided_verdict(op_schema)]
        if last[1] is not None:
            reconcile(op_strategy, last[1])

    return strided_flag


def _skip_void(propagate: Any) -> Any:
    def tensor_meta(self: Any, op_schema: Any) -> Any:
        if not op_schema.op._schema.returns:
            return None  # what running it gives: in-place foreach ops return nothing
        return propagate(self, op_schema)

    return tensor_meta


def _memoized(expand: Any) -> Any:
    memo: dict[Any, Any] = {}

    def hashable(value: Any) -> Any:
        return tuple(map(hashable, value)) if isinstance(value, list | tuple) else value

    def expanded(mesh: Any, op_schema: Any, strategies: Any, **kwargs: Any) -> Any:
        key = (mesh, op_schema, hashable(strategies), hashable(sorted(kwargs.items())))
        try:
            found = memo.get(key)
        except TypeError:  # unhashable metadata (symbolic shapes): no memo
            return expand(mesh, op_schema, strategies, **kwargs)
        if found is None:
            found = memo[key] = expand(mesh, op_schema, strategies, **kwargs)
        return found

    return expanded


def _element_key(op_schema: Any, metas: Any, index: int) -> Any:
    """What element `index` of a foreach op's expansion reads: its input strategies and output metadata."""
    from torch.distributed.tensor._op_schema import OpStrategy, TupleStrategy

    parts: list[Any] = [metas[index] if metas is not None else None]
    for arg in op_schema.args_schema:
        if isinstance(arg, TupleStrategy):
            child = arg.children[index]
            if not isinstance(child, OpStrategy):
                return None
            parts.append(tuple(spec.output_spec for spec in child.strategies))
    return tuple(parts)


def _grouped_foreach(expand: Any) -> Any:
    """A foreach op's expansion, done once per distinct element (a 7b model's 291 parameters have 9 shapes):
    each group's representative goes through torch's own expansion as a one-element op."""
    from torch.distributed.tensor._op_schema import OpSchema, TupleStrategy

    def grouped(mesh: Any, op_schema: Any, info: Any, metas: Any) -> Any:
        whole = expand(mesh, op_schema, info, metas)
        if getattr(whole, "__name__", "") != "expanded_foreach_strategy":
            return whole

        def per_group(op: Any, args_meta: Any, kwargs_meta: Any) -> Any:
            size = next(len(a.children) for a in op_schema.args_schema if isinstance(a, TupleStrategy))
            keys = [_element_key(op_schema, metas, i) for i in range(size)]
            if None in keys:
                return whole(op, args_meta, kwargs_meta)
            done: dict[Any, Any] = {}
            for i, key in enumerate(keys):
                if key not in done:
                    one = OpSchema(op_schema.op, tuple(TupleStrategy([a.children[i]]) if isinstance(
                        a, TupleStrategy) else a for a in op_schema.args_schema), op_schema.kwargs_schema)
                    one_meta = [metas[i]] if metas is not None else None
                    done[key] = expand(mesh, one, info, one_meta)(op, one.args_meta, one.kwargs_meta).children[0]
            return TupleStrategy([done[key] for key in keys])

        return per_group

    return grouped


@contextmanager
def dtensor_propagation(speedups: bool = True) -> Iterator[None]:
    """Five changes to DTensor's sharding propagation; none changes what a step allocates, the last four
    take a foreach op over n tensors (AdamW's first step) from O(n^2) or n full expansions to O(n).

    - It finds output shapes by running each new op on global-shape tensors under the active fake mode, or
      a fresh one when none is (a real run).  Here it would find the simulation's mode, and the tracker
      would count those global-shape tensors (a whole 7b model for a foreach AdamW op) as memory: it gets a
      fake mode of its own, as in a real run.
    - It reconciles every element's strategy with the _StridedShard flag of the whole argument list, which
      it re-reads per element (3 s of 7b's first AdamW step under FSDP2, 7 s under FSDP2+TP): the list's
      verdict is reached once per op (`_strided_verdict`).
    - Ops that return nothing (in-place foreach) still run on global-shape fake tensors to find no output
      shape: they are answered None, as running them answers.
    - Each element's strategy is expanded over the mesh, though a model's elements have a handful of
      distinct shapes: expansions are memoized on everything they read (mesh, element schema, strategies).
    - Each element is still translated into an op schema of its own, and its strategy built, 291 times for
      a 7b model: elements are grouped by what their expansion reads, and one per group is expanded
      (`_grouped_foreach`).
    `speedups=False` keeps only the first (tests compare the two).
    """
    import torch.distributed.tensor._ops.utils as op_utils
    import torch.distributed.tensor._sharding_prop as prop

    from harness.simulate.fake_mode import SimFakeMode

    own_mode = SimFakeMode(allow_non_fake_inputs=True)
    propagator = prop.ShardingPropagator
    saved = (prop.detect_fake_mode, prop._propagate_use_strided_shard_flag,
             propagator._propagate_tensor_meta_non_cached, op_utils.expand_to_full_mesh_op_strategy,
             prop._expand_single_dim_strategy_to_mesh)
    prop.detect_fake_mode = lambda *args: own_mode
    if speedups:
        prop._propagate_use_strided_shard_flag = _once_per_op(saved[1])
        propagator._propagate_tensor_meta_non_cached = _skip_void(saved[2])  # type: ignore[method-assign]
        op_utils.expand_to_full_mesh_op_strategy = _memoized(saved[3])
        prop._expand_single_dim_strategy_to_mesh = _grouped_foreach(saved[4])
    try:
        yield
    finally:
        (prop.detect_fake_mode, prop._propagate_use_strided_shard_flag,
         propagator._propagate_tensor_meta_non_cached,  # type: ignore[method-assign]
         op_utils.expand_to_full_mesh_op_strategy, prop._expand_single_dim_strategy_to_mesh) = saved
