"""Generation with the zoo model: random prompts from the seed, a prefill, then greedy decoding or beam search
over a KV cache (harness/models/kv_cache.py).

`generation_steps` is a generator that yields after the prefill and after each decode step, so measurement
(harness/train/generate_measure.py) can take memory peaks and times per phase without living in the loop.
Fixed length: no end-of-sequence token stops a sequence (a random model has none worth stopping on).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from harness.models.kv_cache import KVCache, make_cache
from harness.models.materialize import materialize
from harness.models.zoo import ModelConfig

if TYPE_CHECKING:
    from harness.core.spec import RunSpec


def load_weights(model: nn.Module, device: torch.device, spec: RunSpec) -> nn.Module:
    """A (meta, possibly sharded) model's weights for inference: materialized in the model's dtype, the block
    projections quantized (bitsandbytes int8/NF4) with --quant; no adapters, nothing trains."""
    materialize(model, device, spec.seed)
    if spec.quant != "none":
        from harness.models.quantize import quantize_blocks

        quantize_blocks(model, spec, device)
    return model.eval().requires_grad_(False)


def prompts(seed: int, rows: int, prompt_len: int, vocab: int) -> torch.Tensor:
    """(rows, prompt_len) token ids, a function of the seed and the shape only."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 7)
    return torch.randint(0, vocab, (rows, prompt_len), generator=gen)


@dataclass
class Generation:
    """What a run of `generation_steps` leaves behind: the sequences (prompt + new tokens, the best beam per
    prompt) and the cache (its bytes are the KV cache's figure)."""

    tokens: torch.Tensor | None = None
    cache: KVCache | None = None


def new_cache(model: nn.Module, kind: str, rows: int, max_len: int, dtype: torch.dtype,
              device: torch.device, kv_heads: int | None = None) -> KVCache:
    cfg: ModelConfig = model.cfg  # type: ignore[assignment]
    return make_cache(kind, cfg.n_layers, rows, kv_heads or cfg.n_kv_heads, max_len, cfg.head_dim, dtype, device)


@torch.no_grad()
def generation_steps(model: nn.Module, prompt: torch.Tensor, new_tokens: int, num_beams: int, cache: KVCache,
                     out: Generation) -> Iterator[None]:
    """Prefill `prompt` (batch, prompt_len) and decode `new_tokens` tokens (the first from the prefill's
    logits), yielding after the prefill and after every decode step; `out` holds the result at the end.
    The cache holds batch x num_beams rows."""
    out.cache = cache
    if num_beams == 1:
        yield from _greedy(model, prompt, new_tokens, cache, out)
    else:
        yield from beam_search(model, prompt, new_tokens, num_beams, cache, out)


def _greedy(model: nn.Module, prompt: torch.Tensor, new_tokens: int, cache: KVCache,
            out: Generation) -> Iterator[None]:
    logits = model(prompt, cache, 0)
    token = logits[:, -1].argmax(-1, keepdim=True)
    del logits  # the prefill's logits are gone before decoding starts
    chosen = [prompt, token]
    yield
    pos = prompt.shape[1]
    for _ in range(new_tokens - 1):
        token = model(token, cache, pos)[:, -1].argmax(-1, keepdim=True)
        chosen.append(token)
        pos += 1
        yield
    out.tokens = torch.cat(chosen, dim=1)


def beam_search(model: nn.Module, prompt: torch.Tensor, new_tokens: int, beams: int, cache: KVCache,
                 out: Generation) -> Iterator[None]:
    """Beam search as Hugging Face runs it without stopping criteria: every prompt expanded to `beams` rows
    before the prefill; each step keeps the `beams` best (row, token) pairs by summed log-probability and
    reorders the cache rows to follow them."""
    batch, pos = prompt.shape
    seqs = prompt.repeat_interleave(beams, dim=0)
    scores = torch.full((batch, beams), float("-inf"), device=prompt.device)
    scores[:, 0] = 0.0  # every beam of a prompt starts equal: take the first step from one of them
    offsets = (torch.arange(batch, device=prompt.device) * beams)[:, None]
    logprobs = _logprobs(model, seqs, cache, 0)
    for step in range(new_tokens):
        vocab = logprobs.shape[-1]
        total = (logprobs + scores.reshape(-1, 1)).view(batch, beams * vocab)
        scores, flat = total.topk(beams, dim=-1)
        del total
        rows = (offsets + flat // vocab).reshape(-1)
        token = (flat % vocab).reshape(-1, 1)
        seqs = torch.cat([seqs.index_select(0, rows), token], dim=1)
        if step == new_tokens - 1:
            break
        cache.reorder(rows)
        yield
        logprobs = _logprobs(model, token, cache, pos)
        pos += 1
    out.tokens = seqs.view(batch, beams, -1)[:, 0]  # topk sorts: beam 0 is the best
    yield


def _logprobs(model: nn.Module, tokens: torch.Tensor, cache: KVCache, pos: int) -> torch.Tensor:
    """Log-probabilities of the next token after each row (the forward's logits of every position are freed
    on return)."""
    return torch.log_softmax(model(tokens, cache, pos)[:, -1].float(), dim=-1)


def generate(model: nn.Module, prompt: torch.Tensor, new_tokens: int, num_beams: int = 1,
             kv_cache: str = "static", dtype: torch.dtype | None = None, kv_heads: int | None = None) -> Generation:
    """Run generation to the end: the sequences and the cache."""
    dtype = dtype or next(model.parameters()).dtype
    rows, max_len = prompt.shape[0] * num_beams, prompt.shape[1] + new_tokens
    cache = new_cache(model, kv_cache, rows, max_len, dtype, prompt.device, kv_heads)
    out = Generation()
    for _ in generation_steps(model, prompt, new_tokens, num_beams, cache, out):
        pass
    return out


@torch.no_grad()
def generate_uncached(model: nn.Module, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy generation that recomputes the whole sequence at every step: the reference the cache is tested
    against."""
    seqs = prompt
    for _ in range(new_tokens):
        token = model(seqs)[:, -1].argmax(-1, keepdim=True)
        seqs = torch.cat([seqs, token], dim=1)
    return seqs
