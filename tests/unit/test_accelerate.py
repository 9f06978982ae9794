"""accelerate's wrapper check (a swapped wrapper is caught by class name) and what it cannot run."""

from __future__ import annotations

import pytest
from torch import nn

from harness.core.errors import Unsupported
from harness.run.validate import validate
from strategies import get_strategy
from tests.helpers import QUICK, needs

pytestmark = needs("accelerate")


class FullyShardedDataParallel(nn.Module):  # stands in for the real wrappers: only the class name is read
    pass


class DistributedDataParallel(nn.Module):
    pass


def test_the_wrapper_check_accepts_what_the_name_promises() -> None:
    spec = QUICK.with_(nproc=2, device="cuda")
    fsdp, ddp = get_strategy("accelerate_fsdp"), get_strategy("accelerate_ddp")
    fsdp._check_wrapper(FullyShardedDataParallel(), spec)  # type: ignore[attr-defined]
    ddp._check_wrapper(DistributedDataParallel(), spec)  # type: ignore[attr-defined]
    with pytest.raises(Unsupported, match="accelerate_ddp on cuda: Accelerator.prepare returned Fully"):
        ddp._check_wrapper(FullyShardedDataParallel(), spec)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("fields", "reason"), [
    ({"quant": "nf4", "lora_rank": 8}, "accelerate's own loading path"),
    ({"dtype": "bf16-pure"}, "pure bf16 is not one of its modes"),
])
def test_what_accelerate_cannot_run_is_unsupported_with_the_reason(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(Unsupported, match=reason):
        validate(QUICK.with_(strategy="accelerate_ddp", nproc=2, **fields))  # type: ignore[arg-type]
