"""The KV cache of generation, one entry per block, and attention over it.

Keys and values are kept with the model's kv heads (before grouped-query attention repeats them), laid out
(rows, kv_heads, positions, head_dim) as Hugging Face's caches keep them; rows = batch x beams.
- StaticCache: pre-allocated for prompt + new tokens at the start (as gpt-fast and Hugging Face's StaticCache);
  each step writes its positions in place.
- DynamicCache: grows by concatenation at every step (as Hugging Face's default DynamicCache), so each step
  holds the old and the new tensor of one layer for a moment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.models.attend import attend

KV_CACHE_KINDS = ("static", "dynamic")


class LayerCache:
    """One block's keys and values."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None

    def update(self, k: torch.Tensor, v: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (rows, kv_heads, s, head_dim) at positions pos..pos+s; return every position so far."""
        raise NotImplementedError

    def reorder(self, rows: torch.Tensor) -> None:
        """Beam search: row i becomes the old row rows[i]."""
        if self.k is None or self.v is None:
            return
        self.k, self.v = self.k.index_select(0, rows), self.v.index_select(0, rows)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v) if t is not None)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: int, n_rep: int,
               softcap: float = 0.0, window: int = 0) -> torch.Tensor:
        """Attention of q (rows, s, heads, head_dim) over the cache after storing k, v (rows, s, kv_heads,
        head_dim) at pos; returns (rows, s, heads x head_dim).  Softcapped scores (`softcap` > 0) or a window
        shorter than the keys (`window` > 0) go through the written-out attention the uncached forward uses
        (harness/models/attend.py), the queries the last positions of the keys."""
        b, s = q.shape[:2]
        keys, values = self.update(k.transpose(1, 2), v.transpose(1, 2), pos)
        if n_rep > 1:
            keys = keys.repeat_interleave(n_rep, dim=1)
            values = values.repeat_interleave(n_rep, dim=1)
        if softcap > 0 or 0 < window < keys.shape[2]:
            return attend(q.transpose(1, 2), keys, values, softcap, window).transpose(1, 2).reshape(b, s, -1)
        mask = None
        if s > 1 and pos > 0:  # a chunk after earlier positions: causal, aligned to the last key
            mask = torch.ones(s, pos + s, dtype=torch.bool, device=q.device).tril(diagonal=pos)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, attn_mask=mask,
                                             is_causal=s > 1 and pos == 0)
        return out.transpose(1, 2).reshape(b, s, -1)


class StaticLayer(LayerCache):
    def __init__(self, shape: tuple[int, int, int, int], dtype: torch.dtype, device: torch.device) -> None:
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    def update(self, k: torch.Tensor, v: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.k is not None and self.v is not None
        end = pos + k.shape[2]
        self.k[:, :, pos:end].copy_(k)
        self.v[:, :, pos:end].copy_(v)
        return self.k[:, :, :end], self.v[:, :, :end]

    def reorder(self, rows: torch.Tensor) -> None:
        assert self.k is not None and self.v is not None
        self.k.copy_(self.k.index_select(0, rows))  # in place: the storage stays where it was allocated
        self.v.copy_(self.v.index_select(0, rows))


class DynamicLayer(LayerCache):
    def update(self, k: torch.Tensor, v: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is None or self.v is None:
            self.k, self.v = k.contiguous(), v.contiguous()
        else:
            self.k, self.v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        return self.k, self.v


class KVCache(list[LayerCache]):
    """One LayerCache per block, in order."""

    def reorder(self, rows: torch.Tensor) -> None:
        for layer in self:
            layer.reorder(rows)

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self)


def make_cache(kind: str, n_layers: int, rows: int, kv_heads: int, max_len: int, head_dim: int,
               dtype: torch.dtype, device: torch.device) -> KVCache:
    """A cache for `n_layers` blocks: `kv_heads` is this rank's share (all of them, or 1/tp of them)."""
    if kind == "static":
        shape = (rows, kv_heads, max_len, head_dim)
        return KVCache(StaticLayer(shape, dtype, device) for _ in range(n_layers))
    if kind == "dynamic":
        return KVCache(DynamicLayer() for _ in range(n_layers))
    raise ValueError(f"unknown kv cache kind {kind!r}; valid: {', '.join(KV_CACHE_KINDS)}")
