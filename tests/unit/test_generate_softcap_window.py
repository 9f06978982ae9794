"""Generation where the family softcaps attention scores or slides a window (Gemma 2, Mistral): the KV-cache path
applies both as the uncached forward does, so cached tokens equal recomputing the whole sequence."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from harness.models.generate import generate, generate_uncached, prompts
from harness.models.llama import build_model
from harness.models.materialize import materialize
from harness.models.zoo import get_config

PROMPT, NEW = 10, 12
FAMILIES = {  # on tiny's shape; a window shorter than prompt + new tokens, so it cuts in the prefill and decode
    "gemma2-like": {"attn_softcap": 50.0, "final_softcap": 30.0, "sliding_window": 8, "sliding_every": 2},
    "window only": {"sliding_window": 6},
    "softcap only": {"attn_softcap": 20.0},
}


@pytest.mark.parametrize("kind", ["static", "dynamic"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cached_tokens_equal_recomputing(family: str, kind: str) -> None:
    cfg = replace(get_config("tiny"), **FAMILIES[family])
    model = build_model(cfg, PROMPT + NEW)
    materialize(model, torch.device("cpu"), seed=0)
    model.eval()
    prompt = prompts(0, 3, PROMPT, cfg.vocab_size)
    cached = generate(model, prompt, NEW, kv_cache=kind)
    assert cached.tokens is not None
    assert torch.equal(cached.tokens, generate_uncached(model, prompt, NEW))


def test_the_window_changes_the_tokens() -> None:
    """The window is applied at all: the same weights without it generate otherwise."""
    outs = []
    for window in (0, 3):
        cfg = replace(get_config("tiny"), sliding_window=window)
        model = build_model(cfg, PROMPT + NEW)
        materialize(model, torch.device("cpu"), seed=0)
        model.eval()
        out = generate(model.eval(), prompts(0, 3, PROMPT, cfg.vocab_size), NEW).tokens
        assert out is not None
        outs.append(out)
    assert not torch.equal(outs[0], outs[1])
