"""Attention beyond SDPA's causal kernel: a sliding window (Mistral, Phi-3, Gemma 2's alternate layers) is SDPA
with a mask, which its kernels keep (a seq x seq mask in the compute dtype on CPU); logit softcapping (Gemma 2)
SDPA cannot express, so it is written out: the math SDPA's reference kernel does, the scores (batch x heads x
queries x keys) alive, as in Hugging Face's eager attention.  Which blocks use what:
ModelConfig.attention_kind (harness/models/zoo.py)."""

from __future__ import annotations

import torch


def visible(n_q: int, n_k: int, window: int, device: torch.device) -> torch.Tensor:
    """(queries, keys) bools: True where a query may attend, the queries the last positions of the keys;
    causal, and within the last `window` positions when `window` > 0."""
    pos_q = torch.arange(n_k - n_q, n_k, device=device)[:, None]
    pos_k = torch.arange(n_k, device=device)[None, :]
    seen = pos_k <= pos_q
    return seen & (pos_k > pos_q - window) if window > 0 else seen


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softcap: float, window: int) -> torch.Tensor:
    """Softcapped attention written out, or SDPA with the window's mask."""
    if softcap > 0:
        return explicit_attention(q, k, v, softcap, window)
    mask = visible(q.shape[-2], k.shape[-2], window, q.device)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softcap: float,
                       window: int) -> torch.Tensor:
    """q: (batch, heads, queries, head_dim); k, v: (batch, heads, keys, head_dim), the queries the last
    positions of the keys.  Causal, softcapped when `softcap` > 0, limited to the last `window` keys when
    `window` > 0; softmax in fp32."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if softcap > 0:
        scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~visible(q.shape[-2], k.shape[-2], window, q.device), float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).type_as(q)
    return torch.matmul(weights, v)
