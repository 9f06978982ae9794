"""Ring attention on CPU: torch's context parallelism (torch.distributed.tensor.experimental.context_parallel)
dispatches only CUDA's SDPA kernels (flash, efficient, cuDNN) to its ring; on CPU SDPA runs
aten._scaled_dot_product_flash_attention_for_cpu, which torch 2.13 refuses under context parallelism
("... does not have a sharding strategy registered").  The CPU kernel has the same contract as CUDA's flash
kernel (output and log-sum-exp forward; grad_out, q, k, v, out and log-sum-exp backward), so this module hands
it to the same ring: a sequence-sharded DTensor strategy for the op and its backward, and the ring's handler,
in torch's own tables, as torch registers its CUDA ones (_context_parallel/_sharding_rules.py, _attention.py).
Checked on 2 gloo ranks against the unsharded attention: the same loss and gradients (7.6e-6 in fp32)."""

from __future__ import annotations

from typing import Any

_ENABLED: list[bool] = []


def enable_cpu_ring_attention() -> None:
    """Register the CPU flash kernel with torch's ring attention (once per process)."""
    if _ENABLED:
        return
    import torch
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor._ops.utils import expand_to_full_mesh_op_strategy, register_op_strategy
    from torch.distributed.tensor.experimental._context_parallel import _attention as ring

    aten = torch.ops.aten
    fwd, bwd = (aten._scaled_dot_product_flash_attention_for_cpu.default,
                aten._scaled_dot_product_flash_attention_for_cpu_backward.default)

    def forward_strategy(op_schema: Any) -> Any:  # out, lse | q, k, v: all replicated, or all on the sequence
        mesh = op_schema.get_mesh_from_args()
        return expand_to_full_mesh_op_strategy(mesh, op_schema, [[Replicate()] * 5, [Shard(2)] * 5], input_index=2)

    def backward_strategy(op_schema: Any) -> Any:  # dq, dk, dv | grad_out, q, k, v, out, lse
        mesh = op_schema.get_mesh_from_args(validate=False)
        return expand_to_full_mesh_op_strategy(mesh, op_schema, [[Replicate()] * 9, [Shard(2)] * 9], input_index=3)

    def ring_forward(mesh: Any, query: Any, key: Any, value: Any, dropout_p: float = 0.0, is_causal: bool = False,
                     *, attn_mask: Any = None, scale: float | None = None) -> Any:
        return ring._templated_ring_attention(mesh.get_group(), 2, fwd, query=query, key=key, value=value,
                                              is_causal=is_causal, dropout_p=dropout_p, scale=scale)

    def ring_backward(mesh: Any, grad_out: Any, query: Any, key: Any, value: Any, out: Any, logsumexp: Any,
                      dropout_p: float, is_causal: bool, *, attn_mask: Any = None, scale: float | None = None) -> Any:
        return ring._templated_ring_attention_backward(
            mesh.get_group(), 2, bwd, grad_out=grad_out, grad_out_name="grad_out", query=query, key=key,
            value=value, out=out, logsumexp=logsumexp, is_causal=is_causal, dropout_p=dropout_p, scale=scale)

    def handler(op_call: Any, args: Any, kwargs: Any) -> Any:  # as torch's _sdpa_handler
        from torch.distributed.tensor import DTensor

        info = DTensor._op_dispatcher.unwrap_to_op_info(op_call, args, kwargs)
        DTensor._op_dispatcher.sharding_propagator.propagate(info)
        ring_op: Any = ring_forward if op_call is fwd else ring_backward
        local_args: Any = info.local_args
        local_kwargs: Any = info.local_kwargs
        sharding: Any = info.output_sharding  # set by propagate
        return DTensor._op_dispatcher.wrap(ring_op(info.compute_mesh, *local_args, **local_kwargs),
                                           sharding.output_spec)

    register_op_strategy(fwd)(forward_strategy)
    register_op_strategy(bwd)(backward_strategy)
    ring.custom_ops[fwd] = handler  # read when context_parallel turns its dispatcher on
    ring.custom_ops[bwd] = handler
    _ENABLED.append(True)
