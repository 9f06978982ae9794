"""What FSDP1 cannot run here, said before anything is launched."""

from __future__ import annotations

import pytest

from harness.core.errors import Unsupported
from harness.core.spec import RunSpec
from harness.run.validate import validate


@pytest.mark.parametrize(("fields", "reason"), [
    ({"strategy": "fsdp1_offload", "nproc": 2, "device": "cpu"}, "fsdp1_offload on cpu: FSDP1's CPUOffload pins"),
    ({"strategy": "fsdp1_hybrid_shard", "nproc": 2}, "fsdp1_hybrid_shard with 2 replica groups of 1 rank"),
    ({"strategy": "fsdp1_full_shard", "nproc": 2, "optimizer": "adafactor"}, "FSDP1 hands the optimizer 1-D"),
    ({"strategy": "fsdp1_full_shard", "nproc": 2, "quant": "int8", "lora_rank": 8}, "into FSDP1's flat param"),
])
def test_what_fsdp1_cannot_run_is_unsupported_with_the_reason(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(Unsupported, match=reason.replace("(", r"\(")):
        validate(RunSpec(**fields))  # type: ignore[arg-type]
