"""Every memory knob under torchrun with single, ddp and fsdp_full_shard: each final loss against single's with
the same knobs, and each record naming its knobs and optimizer."""

from __future__ import annotations

import pytest

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run.sweep import run_sweep

# Every knob with single, ddp and fsdp_full_shard on tiny, combined where they are independent so the matrix
# stays small (CI time).  Tolerance of the final loss against single with the same knobs: 1e-3, because
# 16-bit compute rounds differently per strategy (FSDP2 casts parameters, the others autocast); the fp32
# strategies are held to 1e-4 by tests/test_parity.py.
KNOB_CASES: dict[str, tuple[dict[str, object], float]] = {
    "ckpt full, accum 2, sgd, fp16": ({"activation_checkpointing": "full", "grad_accum": 2, "optimizer": "sgd",
                                       "dtype": "fp16"}, 1e-3),
    "lora all-linear, ckpt selective, bf16, adamw8bit": ({"lora_rank": 8, "lora_targets": "all-linear",
                                                          "dtype": "bf16", "activation_checkpointing": "selective",
                                                          "optimizer": "adamw8bit"}, 1e-3),
    "bf16-pure": ({"dtype": "bf16-pure"}, 1e-3),
    "qlora nf4, adafactor": ({"lora_rank": 8, "quant": "nf4", "optimizer": "adafactor"}, 1e-3),
}
STRATEGIES = ("single", "ddp", "fsdp_full_shard")
UNSUPPORTED = {("qlora nf4, adafactor", "fsdp_full_shard")}


@pytest.fixture(scope="module")
def knob_runs() -> dict[tuple[str, str], Record]:
    base = RunSpec(model="tiny", seq_len=16, warmup=1, memory_steps=1, steps=2)
    specs, names = [], []
    for name, (fields, _) in KNOB_CASES.items():
        from harness.run.presets import matrix

        for spec in matrix(STRATEGIES, ["tiny"], 2, 4, base.with_(**fields)):  # type: ignore[arg-type]
            specs.append(spec)
            names.append((name, spec.strategy))
    records = run_sweep(specs, store_path=None, show_progress=False)
    return dict(zip(names, records, strict=True))


@pytest.mark.parametrize("case", list(KNOB_CASES))
def test_every_knob_runs_and_matches_single(knob_runs: dict[tuple[str, str], Record], case: str) -> None:
    tolerance = KNOB_CASES[case][1]
    reference = knob_runs[(case, "single")]
    assert reference.status == "ok", reference.error
    for strategy in STRATEGIES[1:]:
        record = knob_runs[(case, strategy)]
        if (case, strategy) in UNSUPPORTED:
            assert record.status == "unsupported" and "use single or ddp" in (record.error or "")
            continue
        assert record.status == "ok", f"{strategy}: {record.error}"
        assert record.loss == pytest.approx(reference.loss, rel=tolerance), strategy
        assert record.trainable_params == reference.trainable_params


def test_knob_runs_record_their_knobs_and_optimizer(knob_runs: dict[tuple[str, str], Record]) -> None:
    row = knob_runs[("lora all-linear, ckpt selective, bf16, adamw8bit", "fsdp_full_shard")].to_row()
    assert (row["dtype"], row["optimizer"], row["lora_rank"]) == ("bf16", "adamw8bit", 8)
    assert row["optimizer_class"] == "torchao.optim.adam.AdamW8bit"
    lora = knob_runs[("lora all-linear, ckpt selective, bf16, adamw8bit", "ddp")]
    # 4 blocks x r=8 x (in + out) of q, k, v, o, gate, up, down (dim 256, kv 128, ffn 768)
    assert lora.trainable_params == 4 * 8 * (512 + 384 + 384 + 512 + 1024 + 1024 + 1024)
    assert knob_runs[("ckpt full, accum 2, sgd, fp16", "ddp")].global_batch == 4  # 2 ranks x 1 x 2 micro-batches
