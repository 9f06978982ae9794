"""QLoRA under FSDP2: a 4-bit base (bitsandbytes' nf4 with a shardable storage dtype, torchao's NF4Tensor) with
LoRA under fsdp_full_shard trains like single with the same quantization (fp32, the
1e-4 tolerance of test_parity.py); int8 stays unsupported with the reason FSDP2 cannot shard it."""

from __future__ import annotations

import pytest

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run.presets import matrix
from harness.run.sweep import run_sweep

QUANTS = ("nf4", "nf4-torchao")
STRATEGIES = ("single", "fsdp_full_shard")  # the other fsdp_* take the same quantize-then-shard path (fsdp_quant.py)
BASE = RunSpec(model="tiny", seq_len=16, warmup=1, memory_steps=1, steps=2, lora_rank=8)


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, str], Record]:
    specs, names = [], []
    for quant in (*QUANTS, "int8"):
        strategies = STRATEGIES if quant != "int8" else ("fsdp_full_shard",)
        for spec in matrix(strategies, ["tiny"], 2, 4, BASE.with_(quant=quant)):  # type: ignore[arg-type]
            specs.append(spec)
            names.append((quant, spec.strategy))
    return dict(zip(names, run_sweep(specs, store_path=None, show_progress=False), strict=True))


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("strategy", STRATEGIES[1:])
def test_a_4_bit_base_shards_and_trains_like_single(runs: dict[tuple[str, str], Record], quant: str,
                                                    strategy: str) -> None:
    reference, record = runs[(quant, "single")], runs[(quant, strategy)]
    assert reference.status == "ok", reference.error
    assert record.status == "ok", record.error
    assert record.global_batch == reference.global_batch
    assert record.loss == pytest.approx(reference.loss, rel=1e-4)
    assert record.trainable_params == reference.trainable_params


def test_int8_stays_unsupported_under_fsdp(runs: dict[tuple[str, str], Record]) -> None:
    record = runs[("int8", "fsdp_full_shard")]
    assert record.status == "unsupported"
    assert "weight.CB" in (record.error or "") and "use single or ddp" in (record.error or "")
