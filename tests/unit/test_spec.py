"""RunSpec validation: every bad field is named, with the valid values, before anything launches."""

from __future__ import annotations

import pytest

from harness.core.errors import SpecError
from harness.core.spec import RunSpec
from harness.run.validate import validate

BAD = [
    (dict(model="nope"), "--model", "tiny, 125m"),
    (dict(model="70b"), "--model", "predict/simulate only"),
    (dict(strategy="nope"), "--strategy", "single, ddp, fsdp_full_shard"),
    (dict(strategy="single", nproc=2), "--nproc", "valid: 1"),
    (dict(nproc=0, strategy="ddp"), "--nproc", ">= 1"),
    (dict(batch_size=0), "--batch-size", ">= 1"),
    (dict(seq_len=-3), "--seq-len", ">= 1"),
    (dict(steps=0), "--steps", ">= 1"),
    (dict(warmup=0), "--warmup", ">= 1"),
    (dict(lr=0.0), "--lr", "> 0"),
    (dict(timeout_s=0.0), "--timeout", ">= 1"),
    (dict(seed=-1), "--seed", ">= 0"),
    (dict(device="tpu"), "--device", "auto, cpu, cuda"),
    (dict(strategy="tp", nproc=3), "--nproc", "valid: 1, 2, 4"),
    (dict(strategy="tp", nproc=2, tp=4), "--tp", "must equal --nproc"),
    (dict(strategy="fsdp_tp", nproc=4, tp=3), "--tp", "does not divide 4 ranks"),
    (dict(strategy="fsdp_tp", nproc=8, tp=8), "--tp", "does not divide tiny's 8 heads and 4 kv heads"),
    (dict(strategy="fsdp_hybrid_shard", nproc=1), "--nproc", ">= 2"),
    (dict(strategy="fsdp_hybrid_shard", nproc=4, dp_replicate=3), "--dp-replicate", "valid: 2, 4"),
]


@pytest.mark.parametrize("changes,flag,hint", BAD, ids=[f"{c}" for c, _, _ in BAD])
def test_bad_field_is_named_with_valid_values(changes: dict, flag: str, hint: str) -> None:
    with pytest.raises(SpecError) as info:
        validate(RunSpec(**changes))
    message = str(info.value)
    assert message.startswith(flag + ":"), message
    assert hint in message
    assert "\n" not in message


def test_cuda_on_a_machine_without_one_is_bad_input() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the request is valid here")
    with pytest.raises(SpecError, match="^--device: cuda requested"):
        validate(RunSpec(device="cuda"))


def test_valid_spec_resolves_device_and_roundtrips_json() -> None:
    spec = validate(RunSpec(model="tiny", strategy="fsdp_tp", nproc=4, tp=2))
    assert spec.device in ("cpu", "cuda")
    assert RunSpec.from_json(spec.to_json()) == spec


def test_spec_is_frozen() -> None:
    spec = RunSpec()
    with pytest.raises(AttributeError):
        spec.model = "125m"  # type: ignore[misc]
