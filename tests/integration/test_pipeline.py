"""Pipeline strategies against `single` on the same global batch, with the same micro-batching (`single` with
--grad-accum splitting the batch into micro-batches of the pipeline's size): one short run each, on 4 ranks
and on 2, each stage holding its own blocks and recording its peak and its bubble."""

from __future__ import annotations

import pytest

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.models.zoo import get_config
from harness.run.sweep import run_sweep
from harness.run.validate import validate
from strategies import get_strategy

BASE = RunSpec(model="tiny", seq_len=32, warmup=1, memory_steps=1, steps=2)
# name -> the spec's changes: every micro-batch 2 rows, the global batch 8
CASES = {
    "pp_gpipe": {"nproc": 4, "batch_size": 8, "pp_microbatches": 4},  # 4 stages
    "pp_1f1b": {"nproc": 2, "batch_size": 8, "pp_microbatches": 4},  # 2 stages
    "pp_interleaved": {"nproc": 4, "pp": 2, "batch_size": 4, "pp_microbatches": 2},  # 2 x 2 stages, 2 replicas
    "pp_zb": {"nproc": 2, "batch_size": 8, "pp_microbatches": 4},  # 2 x 2 stages
    "fsdp_pp": {"nproc": 4, "pp": 2, "batch_size": 4, "pp_microbatches": 2},  # 2 stages, each sharded over 2
    "fsdp_tp_pp": {"nproc": 4, "batch_size": 8, "pp_microbatches": 4},  # 2 stages, tensor parallel over 2
}


@pytest.fixture(scope="module")
def records() -> dict[str, Record]:
    specs = [validate(BASE.with_(strategy="single", batch_size=2, grad_accum=4))]
    specs += [validate(BASE.with_(strategy=name, **changes)) for name, changes in CASES.items()]
    return {r.spec.strategy: r for r in run_sweep(specs, None, show_progress=False)}


@pytest.mark.parametrize("name", list(CASES))
def test_pipeline_loss_matches_single_with_the_same_micro_batches(records: dict[str, Record], name: str) -> None:
    record, reference = records[name], records["single"]
    assert record.status == reference.status == "ok", record.error
    assert record.global_batch == reference.global_batch == 8
    assert record.loss is not None and reference.loss is not None
    assert record.loss == pytest.approx(reference.loss, rel=1e-4)


@pytest.mark.parametrize("name", list(CASES))
def test_pipeline_records_each_stage_and_its_bubble(records: dict[str, Record], name: str) -> None:
    record = records[name]
    spec = record.spec
    assert record.mesh_pp == get_strategy(name).layout(spec).pp
    assert record.peak_bytes_per_rank is not None and len(record.peak_bytes_per_rank) == spec.nproc
    assert record.bubble_fraction_per_rank is not None and len(record.bubble_fraction_per_rank) == spec.nproc
    assert all(0.0 <= b < 1.0 for b in record.bubble_fraction_per_rank)
    assert record.bubble_fraction == pytest.approx(sum(record.bubble_fraction_per_rank) / spec.nproc)
    assert record.bubble_theory == get_strategy(name).bubble_theory(spec)  # type: ignore[attr-defined]


def test_stages_hold_their_own_blocks(records: dict[str, Record]) -> None:
    """4 stages of tiny's 4 blocks: together the ranks hold the model once, the first stage the embedding and
    the last the output projection on top of one block each."""
    record, cfg = records["pp_gpipe"], get_config("tiny")
    held = record.param_bytes_per_rank
    assert held is not None and sum(held) == 4 * cfg.param_count()
    block = 4 * (cfg.param_count() - 2 * cfg.vocab_size * cfg.dim - cfg.dim) // cfg.n_layers
    assert held[1] == held[2] == block
    assert held[0] == block + 4 * cfg.vocab_size * cfg.dim
    assert held[3] == block + 4 * (cfg.vocab_size * cfg.dim + cfg.dim)
