"""Attention that SDPA cannot express: logit softcapping and a sliding window (Gemma 2; Mistral's window).  It
is the math SDPA's reference kernel does, written out: the scores (batch x heads x queries x keys) exist, as
they do in Hugging Face's eager attention for these families.  Which blocks use it: ModelConfig.window_of and
ModelConfig.explicit_attention (harness/models/zoo.py)."""

from __future__ import annotations

import torch


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softcap: float,
                       window: int) -> torch.Tensor:
    """q: (batch, heads, queries, head_dim); k, v: (batch, heads, keys, head_dim), the queries the last
    positions of the keys.  Causal, softcapped when `softcap` > 0, limited to the last `window` keys when
    `window` > 0; softmax in fp32."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if softcap > 0:
        scores = torch.tanh(scores / softcap) * softcap
    n_q, n_k = q.shape[-2], k.shape[-2]
    pos_q = torch.arange(n_k - n_q, n_k, device=q.device)[:, None]
    pos_k = torch.arange(n_k, device=q.device)[None, :]
    hidden = pos_k > pos_q
    if window > 0:
        hidden = hidden | (pos_k <= pos_q - window)
    scores = scores.masked_fill(hidden, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).type_as(q)
    return torch.matmul(weights, v)
