"""FSDP1 under torchrun: loss parity with single, sharded parameters, and hybrid sharding on an explicit mesh
keeping replicas equal."""

from __future__ import annotations

import pytest

from harness.core.record import Record
from harness.run.presets import matrix
from harness.run.sweep import run_sweep
from harness.run.validate import validate
from tests.helpers import QUICK

VARIANTS = ("fsdp1_full_shard", "fsdp1_shard_grad_op")


@pytest.fixture(scope="module")
def runs() -> dict[str, Record]:
    specs = matrix(("single", *VARIANTS), ["tiny"], 2, 4, QUICK)
    return {r.spec.strategy: r for r in run_sweep(specs, None, show_progress=False)}


@pytest.mark.parametrize("name", VARIANTS)
def test_fsdp1_loss_matches_single(runs: dict[str, Record], name: str) -> None:
    assert runs[name].status == "ok", runs[name].error
    assert runs[name].loss == pytest.approx(runs["single"].loss, rel=1e-4)


def test_fsdp1_shards_parameters(runs: dict[str, Record]) -> None:
    single, sharded = runs["single"].param_bytes_per_rank, runs["fsdp1_full_shard"].param_bytes_per_rank
    assert single is not None and sharded is not None
    assert sum(sharded) == pytest.approx(single[0], rel=1e-3) and max(sharded) < 0.6 * single[0]


def test_fsdp1_hybrid_on_an_explicit_mesh_keeps_replicas_equal(runs: dict[str, Record]) -> None:
    """2 replica groups x 2 shards on 4 ranks; the default grouping would leave replicas apart on gloo."""
    spec = validate(QUICK.with_(strategy="fsdp1_hybrid_shard", nproc=4, dp_replicate=2, batch_size=1))
    record = run_sweep([spec], None, show_progress=False)[0]
    assert record.status == "ok", record.error
    assert record.loss == pytest.approx(runs["single"].loss, rel=1e-4)  # the same global batch of 4
    d = record.param_digest_per_rank
    assert d is not None
    assert d[0] == pytest.approx(d[2], rel=1e-12) and d[1] == pytest.approx(d[3], rel=1e-12)
    assert d[0] != pytest.approx(d[1], rel=1e-6)
