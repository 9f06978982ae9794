"""Attention that SDPA cannot express: logit softcapping and a sliding window (Gemma 2; Mistral's window).  It
is the math SDPA's reference kernel does, written out: the scores (batch x heads x queries x keys) exist, as
they do in Hugging Face's eager attention for these families."""

from __future__ import annotations

import torch

from harness.models.zoo import ModelConfig


def window_of(cfg: ModelConfig, layer: int) -> int:
    """The sliding window of block `layer` (0: it sees every earlier position)."""
    return cfg.sliding_window if cfg.sliding_window and layer % cfg.sliding_every == 0 else 0


def needs_explicit(cfg: ModelConfig, layer: int, seq_len: int) -> bool:
    """Whether block `layer` needs the written-out attention at this sequence length: softcapping, or a window
    shorter than the sequence (a window as long as the sequence is plain causal attention)."""
    window = window_of(cfg, layer)
    return cfg.attn_softcap > 0 or 0 < window < seq_len


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
