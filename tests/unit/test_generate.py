"""Generation in the zoo model: the KV cache gives the tokens that recomputing the whole sequence gives, for
both cache kinds, and beam search with one beam is greedy decoding."""

from __future__ import annotations

import pytest
import torch

from harness.models.generate import Generation, beam_search, generate, generate_uncached, new_cache, prompts
from harness.models.llama import Transformer, build_model
from harness.models.materialize import materialize
from harness.models.zoo import get_config

PROMPT, NEW = 12, 8


def tiny(max_len: int = PROMPT + NEW) -> Transformer:
    model = build_model(get_config("tiny"), max_len)
    materialize(model, torch.device("cpu"), seed=0)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> Transformer:
    return tiny()


@pytest.fixture(scope="module")
def prompt() -> torch.Tensor:
    return prompts(0, 3, PROMPT, get_config("tiny").vocab_size)


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_cached_greedy_tokens_equal_recomputing_without_a_cache(model: Transformer, prompt: torch.Tensor,
                                                                 kind: str) -> None:
    cached = generate(model, prompt, NEW, kv_cache=kind)
    assert cached.tokens is not None
    assert torch.equal(cached.tokens, generate_uncached(model, prompt, NEW))
    assert cached.tokens.shape == (3, PROMPT + NEW)
    assert torch.equal(cached.tokens[:, :PROMPT], prompt)


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_cached_logits_match_a_full_forward(model: Transformer, prompt: torch.Tensor, kind: str) -> None:
    """Position by position, the cached forward's logits are the full forward's (RoPE offset by the cache
    position), for a one-token step and for a chunk after it."""
    seqs = generate_uncached(model, prompt, NEW)
    cache = new_cache(model, kind, 3, PROMPT + NEW, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        full = model(seqs)
        prefill = model(prompt, cache, 0)
        step = model(seqs[:, PROMPT:PROMPT + 1], cache, PROMPT)
        chunk = model(seqs[:, PROMPT + 1:PROMPT + 4], cache, PROMPT + 1)
    torch.testing.assert_close(prefill, full[:, :PROMPT], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(step[:, 0], full[:, PROMPT], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(chunk, full[:, PROMPT + 1:PROMPT + 4], rtol=1e-4, atol=1e-5)
    assert cache.nbytes() == 2 * 4 * 3 * 4 * (PROMPT + (NEW if kind == "static" else 4)) * 32 * 4


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_beam_search_with_one_beam_is_greedy(model: Transformer, prompt: torch.Tensor, kind: str) -> None:
    greedy = generate(model, prompt, NEW, kv_cache=kind).tokens
    cache = new_cache(model, kind, 3, PROMPT + NEW, torch.float32, torch.device("cpu"))
    beams = Generation()
    for _ in beam_search(model, prompt, NEW, 1, cache, beams):
        pass
    assert greedy is not None and beams.tokens is not None
    assert torch.equal(beams.tokens, greedy)


def test_beam_search_keeps_the_prompt_and_follows_the_cache(model: Transformer, prompt: torch.Tensor) -> None:
    """With 3 beams each prompt's best sequence starts with the prompt, and its summed log-probability is at
    least greedy's (beam search keeps greedy's path among its candidates at every step)."""
    out = generate(model, prompt, NEW, num_beams=3)
    greedy = generate(model, prompt, NEW).tokens
    assert out.tokens is not None and greedy is not None
    assert torch.equal(out.tokens[:, :PROMPT], prompt)
    assert out.cache is not None and out.cache.nbytes() == 2 * 4 * 9 * 4 * (PROMPT + NEW) * 32 * 4
    assert (logprob(model, out.tokens) >= logprob(model, greedy) - 1e-4).all()


def logprob(model: Transformer, seqs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logp = torch.log_softmax(model(seqs[:, :-1]).float(), dim=-1)
    picked = logp.gather(-1, seqs[:, 1:, None])[..., 0]
    return picked[:, PROMPT - 1:].sum(-1)
