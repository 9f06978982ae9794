"""FSDP1 against the single reference, its hybrid mesh keeping replicas equal, and what it cannot run here."""

from __future__ import annotations

import pytest

from harness.record import Record
from harness.spec import RunSpec, Unsupported
from harness.sweep import matrix, run_sweep

BASE = RunSpec(model="tiny", seq_len=16, warmup=1, memory_steps=1, steps=2)
VARIANTS = ("fsdp1_full_shard", "fsdp1_shard_grad_op")


@pytest.fixture(scope="module")
def runs() -> dict[str, Record]:
    specs = matrix(("single", *VARIANTS), ["tiny"], 2, 4, BASE)
    return {r.spec.strategy: r for r in run_sweep(specs, None, show_progress=False)}


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_fsdp1_loss_matches_single(runs: dict[str, Record], name: str) -> None:
    assert runs[name].status == "ok", runs[name].error
    assert runs[name].loss == pytest.approx(runs["single"].loss, rel=1e-4)


@pytest.mark.slow
def test_fsdp1_shards_parameters(runs: dict[str, Record]) -> None:
    single, sharded = runs["single"].param_bytes_per_rank, runs["fsdp1_full_shard"].param_bytes_per_rank
    assert single is not None and sharded is not None
    assert sum(sharded) == pytest.approx(single[0], rel=1e-3) and max(sharded) < 0.6 * single[0]


@pytest.mark.slow
def test_fsdp1_hybrid_on_an_explicit_mesh_keeps_replicas_equal(runs: dict[str, Record]) -> None:
    """2 replica groups x 2 shards on 4 ranks; the default grouping would leave replicas apart on gloo."""
    spec = BASE.with_(strategy="fsdp1_hybrid_shard", nproc=4, dp_replicate=2, batch_size=1).validate()
    record = run_sweep([spec], None, show_progress=False)[0]
    assert record.status == "ok", record.error
    assert record.loss == pytest.approx(runs["single"].loss, rel=1e-4)  # the same global batch of 4
    d = record.param_digest_per_rank
    assert d is not None
    assert d[0] == pytest.approx(d[2], rel=1e-12) and d[1] == pytest.approx(d[3], rel=1e-12)
    assert d[0] != pytest.approx(d[1], rel=1e-6)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"strategy": "fsdp1_offload", "nproc": 2, "device": "cpu"}, "fsdp1_offload on cpu: FSDP1's CPUOffload pins"),
    ({"strategy": "fsdp1_hybrid_shard", "nproc": 2}, "fsdp1_hybrid_shard with 2 replica groups of 1 rank"),
    ({"strategy": "fsdp1_full_shard", "nproc": 2, "optimizer": "adafactor"}, "FSDP1 hands the optimizer 1-D"),
    ({"strategy": "fsdp1_full_shard", "nproc": 2, "quant": "int8", "lora_rank": 8}, "into FSDP1's flat param"),
])
def test_what_fsdp1_cannot_run_is_unsupported_with_the_reason(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(Unsupported, match=reason.replace("(", r"\(")):
        RunSpec(**fields).validate()  # type: ignore[arg-type]
