"""estimate --workload generate under zero3 (harness/estimate/generation_zero3.py): the weights split over the
ranks as loaded, what ZeRO-3's hooks gather counted beside them, and the strategies that do not generate
refused before launch with the reason."""

from __future__ import annotations

import pytest

from harness.core.errors import Unsupported
from harness.core.spec import RunSpec
from harness.estimate.generation import predict_generation
from harness.estimate.generation_zero3 import Zero3Gathers
from harness.models.zoo import config_for
from harness.run.validate import validate

SPEC = RunSpec(workload="generate", strategy="zero3", nproc=2, model="125m", batch_size=2, prompt_len=64,
               new_tokens=8, device="cpu")


def test_load_is_the_weights_split_as_fsdp_full_shard_splits_them() -> None:
    zero3 = predict_generation(SPEC, "cpu").phase_peaks["load_bytes"]
    assert zero3 == predict_generation(SPEC.with_(strategy="fsdp_full_shard"), "cpu").phase_peaks["load_bytes"]
    single = predict_generation(SPEC.with_(strategy="single", nproc=1), "cpu").phase_peaks["load_bytes"]
    assert zero3 < single
    four = predict_generation(SPEC.with_(nproc=4), "cpu").breakdown["weights"]
    assert 2 * four == pytest.approx(predict_generation(SPEC, "cpu").breakdown["weights"], abs=2)


def test_the_head_gathers_beside_the_norms_and_nccl_gathers_in_place() -> None:
    cfg = config_for(SPEC)
    z = Zero3Gathers.of(cfg, SPEC)
    assert z.embed == z.head == cfg.vocab_size * cfg.dim * 4.0 and z.copies == 2  # fp32; gloo's flat buffer
    assert z.persist == (2 * cfg.n_layers + 1) * cfg.dim * 4.0  # the norms, below the persistence threshold
    predicted = predict_generation(SPEC, "cpu")
    assert predicted.phase == "prefill head gather"  # the output projection and gloo's buffer for it
    assert predicted.breakdown["comm"] == int(z.persist + 2 * z.head)
    # NCCL gathers in place: the peak moves to the logits, with the projection gathered once
    cuda = predict_generation(SPEC.with_(device="cuda"), "cuda")
    assert cuda.phase == "prefill logits" and cuda.breakdown["comm"] == int(z.persist + z.head)
    assert cuda.breakdown["weights"] == predicted.breakdown["weights"]


def test_nothing_stays_gathered_between_forwards() -> None:
    """Beam search's step between forwards holds no gathered weights (the partition cache is emptied after
    every forward); a forward starts with the embedding alone gathering."""
    from harness.estimate.generation_zero3 import zero3_comm

    z = Zero3Gathers.of(config_for(SPEC), SPEC)
    phases = zero3_comm({"beam step": {"logits": 1.0}}, z, 0.0, "decode", 5.0)
    assert phases["beam step"]["comm"] == 0.0
    assert phases["decode forward start"] == {"kv_cache": 5.0, "buffers": 0.0, "comm": 2 * z.embed}


def test_the_gathered_set_does_not_shrink_with_more_ranks() -> None:
    two, eight = predict_generation(SPEC, "cpu"), predict_generation(SPEC.with_(nproc=8), "cpu")
    assert two.breakdown["comm"] == eight.breakdown["comm"]
    assert eight.peak_bytes < two.peak_bytes


@pytest.mark.parametrize(("name", "reason"), [
    ("zero1", "ZeRO-1 partitions optimizer state only"), ("zero2", "ZeRO-2 partitions optimizer state and "
                                                                   "gradients only"),
    ("zero3_offload", "ZeRO-3 inference with parameters offloaded is not wired in")])
def test_the_other_zero_strategies_say_why_they_do_not_generate(name: str, reason: str) -> None:
    with pytest.raises(Unsupported, match=f"^{name} with --workload generate: {reason}"):
        validate(SPEC.with_(strategy=name), measure=False)


def test_zero3_generation_is_not_simulated_and_says_why() -> None:
    from harness.simulate.generate_runner import check_generation_simulable

    with pytest.raises(Unsupported, match="^cannot simulate zero3: DeepSpeed's engine reads real data"):
        check_generation_simulable(validate(SPEC, measure=False))
