"""--loss chunked and --activation-checkpointing op without torchrun: the chunked loss is the full loss's mean
(gradients too, pieces of unequal length included), op-level checkpointing recomputes to the same gradients,
and the knobs' values are checked before launch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.core.errors import SpecError
from harness.core.knobs import knob_label, validate
from harness.core.spec import RunSpec
from harness.models.checkpointing import apply_checkpointing
from harness.models.chunked_loss import chunked_cross_entropy
from harness.models.llama import build_model
from harness.models.materialize import materialize
from harness.models.zoo import config_for
from harness.train.step import model_loss


@pytest.mark.parametrize("chunks", [1, 3, 8])
def test_chunked_cross_entropy_is_the_mean_with_its_gradient(chunks: int) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(2, 13, 16, requires_grad=True)  # 13 tokens: unequal pieces
    weight = torch.randn(50, 16)
    targets = torch.randint(0, 50, (2, 13))
    full = F.cross_entropy((hidden @ weight.T).flatten(0, 1), targets.flatten())
    (expected,) = torch.autograd.grad(full, hidden)
    pieces = [piece @ weight.T for piece in hidden.tensor_split(chunks, dim=1)]
    chunked = chunked_cross_entropy(pieces, targets)
    (got,) = torch.autograd.grad(chunked, hidden)
    assert chunked.item() == pytest.approx(full.item(), rel=1e-6)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-8)


def _loss_and_grads(spec: RunSpec) -> tuple[float, list[torch.Tensor]]:
    model = build_model(config_for(spec), spec.seq_len)
    materialize(model, torch.device("cpu"), 0)
    apply_checkpointing(model, spec)
    gen = torch.Generator().manual_seed(1)
    x, y = (torch.randint(0, 4096, (2, spec.seq_len), generator=gen) for _ in range(2))
    loss = model_loss(model, spec)(x, y)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("fields", [{"loss_type": "chunked", "loss_chunks": 5}, {"activation_checkpointing": "op"}])
def test_recipe_knob_trains_like_the_plain_model(fields: dict[str, object]) -> None:
    base = RunSpec(model="tiny", seq_len=32)
    loss, grads = _loss_and_grads(base)
    loss_knob, grads_knob = _loss_and_grads(base.with_(**fields))
    assert loss_knob == pytest.approx(loss, rel=1e-6)
    assert len(grads_knob) == len(grads)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads_knob, grads, strict=True))


def test_bad_values_name_their_field() -> None:
    with pytest.raises(SpecError, match="^--loss: unknown value 'fused'"):
        validate(RunSpec(loss_type="fused"))
    with pytest.raises(SpecError, match="^--loss-chunks: 200 chunks"):
        validate(RunSpec(loss_type="chunked", loss_chunks=200, seq_len=128))
    with pytest.raises(SpecError, match="^--activation-checkpointing: unknown value 'ops'; valid: off, full, "
                                        "selective, op"):
        validate(RunSpec(activation_checkpointing="ops"))


def test_knob_label_names_both() -> None:
    label = knob_label(RunSpec(loss_type="chunked", loss_chunks=4, activation_checkpointing="op"))
    assert label == "ckpt op, loss chunked/4"
