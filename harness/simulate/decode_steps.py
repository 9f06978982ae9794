"""Which decode steps of a simulated generation run the model's blocks in full (harness/simulate/generate_run.py).

Every decode step of the real loop (harness/models/generate.py) runs: the token choice, beam search's scores,
reordering and growing sequences, and the KV cache's writes.  The blocks' own work runs in full in the prefill
and the first and last `ENDS` decode steps; in the steps between, each layer's keys and values go into a
dynamic cache as the attention would put them (a static cache is written in place, which changes no figure, so
its writes are left out) and the logits are made in their shape, without the projections, attention and MLP.
What a decode step holds at its peak only grows with the position (the cache, the keys attended over, the
sequences beam search keeps, the tokens chosen so far), so the largest of a generation's decode steps is its
last, which runs in full: a 7b generation of 256 tokens runs 5 forwards in full instead of 257.
tests/accuracy/test_generation_accuracy.py holds the figures to those of every step in full.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from harness.models.kv_cache import StaticLayer
from harness.models.zoo import ModelConfig

ENDS = 2  # decode steps run in full at each end


class SteppedModel:
    """`model` called as the generation loop calls it: in full for the prefill (call 0), the first and the last
    `ENDS` decode steps of a generation of `new_tokens` tokens, the cache writes alone in the others.
    `ends=None` runs every step in full."""

    def __init__(self, model: nn.Module, new_tokens: int, ends: int | None = ENDS) -> None:
        self.model, self.cfg = model, cast(ModelConfig, model.cfg)
        self.calls, self.new_tokens, self.ends = 0, new_tokens, ends

    def full(self, call: int) -> bool:
        decode_steps = self.new_tokens - 1  # the prefill's logits give the first token
        return self.ends is None or call <= self.ends or call > decode_steps - self.ends

    def __call__(self, tokens: torch.Tensor, cache: Any, pos: int) -> torch.Tensor:
        call, self.calls = self.calls, self.calls + 1
        if self.full(call):
            return self.model(tokens, cache, pos)  # type: ignore[no-any-return]
        return self._cache_writes(tokens, cache, pos)

    def _cache_writes(self, tokens: torch.Tensor, cache: Any, pos: int) -> torch.Tensor:
        """Each layer's new keys and values into a dynamic cache (a static one is written in place, which
        changes no figure), then logits in their shape."""
        rows, steps = tokens.shape
        first = cache[0].k
        assert first is not None  # written by the prefill
        if not isinstance(cache[0], StaticLayer):
            new = torch.empty((rows, first.shape[1], steps, first.shape[3]), dtype=first.dtype, device=first.device)
            for layer in cache:
                layer.update(new, new, pos)
        return torch.empty((rows, steps, self.cfg.vocab_size), dtype=first.dtype, device=tokens.device)
