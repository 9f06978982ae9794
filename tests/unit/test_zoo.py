"""The zoo: exact parameter counts on the meta device, and deterministic, sharding-independent init."""

from __future__ import annotations

import pytest
import torch

from harness.models.llama import build_model
from harness.models.materialize import materialize
from harness.models.zoo import ZOO

PUBLISHED = {"7b": 6_738_415_616, "8b": 8_030_261_248, "baichuan-7b": 7_000_559_616}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights are one parameter


@pytest.mark.parametrize("name,count", PUBLISHED.items())
def test_published_parameter_counts_on_meta(name: str, count: int) -> None:
    model = build_model(ZOO[name], max_seq_len=16)
    assert all(p.is_meta for p in model.parameters())
    assert _count(model) == count
    assert ZOO[name].param_count() == count


@pytest.mark.parametrize("name", list(ZOO))
def test_config_count_matches_model(name: str) -> None:
    assert _count(build_model(ZOO[name], max_seq_len=16)) == ZOO[name].param_count()


def test_materialize_is_deterministic_and_runs() -> None:
    a, b = build_model(ZOO["tiny"], 32), build_model(ZOO["tiny"], 32)
    materialize(a, torch.device("cpu"), seed=3)
    materialize(b, torch.device("cpu"), seed=3)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    c = build_model(ZOO["tiny"], 32)
    materialize(c, torch.device("cpu"), seed=4)
    assert not torch.equal(a.get_parameter("layers.0.attention.wq.weight"),
                           c.get_parameter("layers.0.attention.wq.weight"))
    logits = a(torch.randint(0, ZOO["tiny"].vocab_size, (2, 32)))
    assert logits.shape == (2, 32, ZOO["tiny"].vocab_size)
    assert torch.isfinite(logits).all()


def test_tied_embeddings_share_storage() -> None:
    model = build_model(ZOO["1b"], 16)
    assert model.output.weight is model.tok_embeddings.weight
