"""Async TP (tp_async, fsdp_tp_async) and context parallelism (cp, fsdp_cp, fsdp_tp_cp): async TP refused on CPU
with torch's own error before anything is launched, and context parallelism with tensor parallelism refused
with its reason (cp and fsdp_cp run: tests/integration/test_parity.py); bad input refused in one line; all
modelled by `estimate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.errors import SpecError, Unsupported
from harness.core.spec import RunSpec
from harness.estimate.activations import Shapes
from harness.estimate.async_tp_memory import SIGNAL_PAD_BYTES, workspace_bytes
from harness.estimate.context_parallel_memory import cp_shapes, ring_backward, ring_forward
from harness.estimate.fit import profile_for
from harness.estimate.predict import predict
from harness.models.zoo import config_for
from harness.run.validate import validate

ROOT = Path(__file__).resolve().parents[2]
SYMM_MEM_ON_CPU = "Could not run 'symm_mem::fused_all_gather_matmul' with arguments from the 'CPU' backend"
REFUSED = {"tp_async": SYMM_MEM_ON_CPU, "fsdp_tp_async": SYMM_MEM_ON_CPU,  # torch 2.13 on 2 CPU ranks, gloo
           "fsdp_tp_cp": "does not combine context parallelism with tensor parallelism"}
NEW = {"tp_async": 2, "fsdp_tp_async": 4, "cp": 2, "fsdp_cp": 4, "fsdp_tp_cp": 8}  # strategy -> ranks


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_measured_run_on_cpu_is_unsupported_with_the_reason(name: str) -> None:
    with pytest.raises(Unsupported, match=f"^{name} on cpu: ") as why:
        validate(RunSpec(strategy=name, nproc=NEW[name], device="cpu"))
    assert REFUSED[name] in str(why.value)


@pytest.mark.parametrize("name", ["cp", "fsdp_cp"])
def test_context_parallel_validates_for_a_measured_cpu_run(name: str) -> None:
    assert validate(RunSpec(strategy=name, nproc=NEW[name], device="cpu")).device == "cpu"


def test_run_records_unsupported_with_the_reason_and_launches_nothing(store_dir: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.main import main

    code = main(["run", "--strategy", "tp_async", "--nproc", "2", "--device", "cpu", "--json", "--store",
                 str(store_dir)])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and record["status"] == "unsupported" and SYMM_MEM_ON_CPU in record["error"]
    assert record["strategy"] == "tp_async" and not record.get("peak_bytes")


@pytest.mark.parametrize("name", list(NEW))
def test_simulate_says_why_not(name: str, cli: Any) -> None:
    code, err = cli(["simulate", "--strategy", name, "--nproc", str(NEW[name])])
    assert code == 1 and err.startswith(f"spacetime: unsupported: cannot simulate {name}: ")


@pytest.mark.parametrize("name", list(NEW))
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_estimate_models_every_target(name: str, device: str) -> None:
    spec = validate(RunSpec(strategy=name, nproc=NEW[name], device=device), measure=False)
    assert predict(spec, profile_for(spec), device).peak_bytes > 0


@pytest.mark.parametrize(("fields", "flag", "text"), [
    ({"strategy": "fsdp_cp", "nproc": 4, "cp": 3}, "--cp", "3 context-parallel ranks do not divide 4 ranks"),
    ({"strategy": "fsdp_cp", "nproc": 4, "seq_len": 130}, "--seq-len", "2 x 2 load-balanced chunks"),
    ({"strategy": "fsdp_tp_cp", "nproc": 8, "tp": 4, "cp": 2, "seq_len": 36}, "--seq-len", "a multiple of 8"),
    ({"strategy": "fsdp_tp_cp", "nproc": 8, "tp": 4, "cp": 4}, "--cp", "4 context-parallel x 4 tensor-parallel"),
    ({"strategy": "cp", "nproc": 4, "cp": 2}, "--cp", "--cp must equal --nproc (4)"),
    ({"strategy": "ddp", "nproc": 2, "cp": 2}, "--cp", "ddp has no context parallelism"),
    ({"strategy": "fsdp_cp", "nproc": 4, "tp": 2}, "--tp", "fsdp_cp has no tensor parallelism"),
    ({"strategy": "tp_async", "nproc": 2, "seq_len": 63}, "--seq-len", "63 tokens do not split"),
])
def test_bad_input_is_one_line_naming_the_flag(fields: dict[str, Any], flag: str, text: str) -> None:
    with pytest.raises(SpecError) as bad:
        validate(RunSpec(**fields), measure=False)
    assert str(bad.value).startswith(f"{flag}: ") and text in str(bad.value) and "\n" not in str(bad.value)


def test_bad_cp_exits_2_before_launch(cli: Any) -> None:
    code, err = cli(["run", "--strategy", "fsdp_cp", "--nproc", "4", "--cp", "3", "--device", "cpu", "--no-store"])
    assert code == 2 and "--cp: 3 context-parallel ranks do not divide 4 ranks" in err


def test_ring_attention_takes_causal_sdpa_only() -> None:
    with pytest.raises(Unsupported, match="gemma2-9b's softcap attention is not"):
        validate(RunSpec(model="gemma2-9b", strategy="fsdp_cp", nproc=2, seq_len=8192), measure=False)


def _tiny(dtype: str, strategy: str = "tp_async", nproc: int = 2, **fields: Any) -> tuple[RunSpec, Shapes]:
    spec = validate(RunSpec(strategy=strategy, nproc=nproc, dtype=dtype, **fields), measure=False)
    prof = profile_for(spec)
    return spec, Shapes.of(config_for(spec), spec, prof.tp, casts_params=prof.casts_params)


@pytest.mark.parametrize(("dtype", "strategy", "nproc", "expected"), [
    # tiny: dim 256; batch 4 x seq 128 = 512 tokens, 256 a rank at tp 2
    ("bf16", "tp_async", 2, max(256 * 256 * 4, 2 * 256 * 256 * 2)),  # gathers fp32 (autocast), reduces bf16
    ("fp32", "tp_async", 2, max(256 * 256 * 4, 2 * 256 * 256 * 4)),
    ("bf16", "fsdp_tp_async", 4, max(256 * 256 * 2, 2 * 256 * 256 * 2)),  # FSDP's bf16 parameters
])
def test_async_tp_workspace_is_the_larger_fused_request(dtype: str, strategy: str, nproc: int, expected: int) -> None:
    _, shapes = _tiny(dtype, strategy, nproc)
    assert workspace_bytes(shapes) == expected + SIGNAL_PAD_BYTES


@pytest.mark.parametrize("model", ["8b", "70b"])
def test_async_tp_is_tp_sp_plus_the_workspace_beside_the_context(model: str) -> None:
    fields: dict[str, Any] = {"model": model, "batch_size": 1, "seq_len": 8192}
    spec, shapes = _tiny("bf16", "tp_async", 8, **fields)
    sp = validate(RunSpec(strategy="tp_sp", nproc=8, dtype="bf16", **fields), measure=False)
    ours, theirs = predict(spec, profile_for(spec)), predict(sp, profile_for(sp))
    assert ours.peak_bytes == theirs.peak_bytes  # outside the caching allocator
    assert ours.device_bytes - theirs.device_bytes == int(workspace_bytes(shapes))
    # 1,024 tokens a rank x 8,192 wide, reduce-scattered from bf16 outputs through a double buffer
    assert workspace_bytes(shapes) == 2 * (8192 // 8) * config_for(spec).dim * 2 + SIGNAL_PAD_BYTES


def _held(matrix: str, prefix: str) -> list[dict[str, Any]]:
    cases = json.loads((ROOT / "benchmarks" / "results" / matrix).read_text())["cases"]
    return [c["spec"] for name, c in sorted(cases.items()) if name.startswith(prefix)]


@pytest.mark.parametrize("held", _held("tp-accuracy-cpu.json", "tiny-tp_sp-"),
                         ids=lambda s: f"{s['dtype']}-ckpt-{s['activation_checkpointing']}-lp{int(s['loss_parallel'])}")
def test_async_tp_keeps_the_measured_tp_sp_cases_peak(held: dict[str, Any]) -> None:
    """The tensor-parallel matrix's measured tp_sp cases stand for tp_async's allocator peak: the same figure,
    with the workspace only in the device bytes."""
    sp = validate(RunSpec(**held, device="cuda"), measure=False)
    ours = validate(RunSpec(**{**held, "strategy": "tp_async"}, device="cuda"), measure=False)
    a, b = predict(ours, profile_for(ours)), predict(sp, profile_for(sp))
    prof = profile_for(ours)
    shapes = Shapes.of(config_for(ours), ours, prof.tp, casts_params=prof.casts_params)
    assert a.peak_bytes == b.peak_bytes and a.device_bytes - b.device_bytes == int(workspace_bytes(shapes))


def test_ring_buffers_for_tiny_by_hand() -> None:
    """tiny: dim 256 = 8 heads x 32 (its 4 kv heads repeated to 8), batch 2 x seq 128 over cp 2: 128 tokens a
    rank, fp32."""
    _, shapes = _tiny("fp32", "fsdp_cp", 2, batch_size=2, seq_len=128)
    local = cp_shapes(shapes, 2)
    assert local.t == 128
    fwd, bwd = ring_forward(local, 2), ring_backward(local, 2)
    assert fwd.comm == 2 * 256 * 256 * 4 + 2 * 128 * 256 * 4  # gathered K, V; the local pair sent
    assert fwd.temporaries == 128 * (256 + 8) * 4  # merged output and log-sum-exp in fp32
    assert bwd.comm == 2 * 256 * 256 * 4 + 2 * 128 * 256 * 4 + 4 * 128 * 256 * 4  # and dK, dV sent and received
    assert bwd.temporaries == 128 * 768 * 4 * 2  # fp32 dq, dk, dv and one step's


@pytest.mark.parametrize("held", [s for s in _held("accuracy-cpu.json", "tiny-fsdp_full_shard-") if not s["lora_rank"]],
                         ids=lambda s: f"{s['dtype']}-ckpt-{s['activation_checkpointing']}")
def test_cp_at_seq_is_fsdp_at_seq_over_cp_plus_the_ring(held: dict[str, Any]) -> None:
    """The measured matrix's fsdp_full_shard on 2 ranks stands for fsdp_cp on 2 ranks (cp 2, the same shards) at
    twice the sequence: the same tokens a rank.  fsdp_cp's prediction is fsdp's, or above it by no more than
    ring attention's buffers where they set the peak."""
    fsdp = validate(RunSpec(**held, device="cpu"), measure=False)
    cp = validate(RunSpec(**{**held, "strategy": "fsdp_cp", "seq_len": 2 * held["seq_len"]}, device="cpu"),
                  measure=False)
    ours, theirs = predict(cp, profile_for(cp), "cpu"), predict(fsdp, profile_for(fsdp), "cpu")
    local = cp_shapes(Shapes.of(config_for(cp), cp, casts_params=True), 2)
    ring = max(sum(vars(r).values()) for r in (ring_forward(local, 2), ring_backward(local, 2)))
    assert theirs.peak_bytes <= ours.peak_bytes <= theirs.peak_bytes + ring
    assert (ours.peak_bytes == theirs.peak_bytes) == ("ring" not in ours.phase)


@pytest.mark.parametrize("model", ["8b", "70b"])
@pytest.mark.parametrize("strategy", ["tp_async", "fsdp_tp_async", "cp", "fsdp_cp", "fsdp_tp_cp"])
def test_estimate_prints_a_figure_for_large_models(model: str, strategy: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.main import main

    extra = {"fsdp_tp_async": ["--tp", "4"], "fsdp_tp_cp": ["--tp", "4", "--cp", "2"]}.get(strategy, [])
    code = main(["estimate", "--model", model, "--strategy", strategy, "--nproc", "8", "--dtype", "bf16",
                 "--batch-size", "1", "--seq-len", "8192", "--json", *extra])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["device_bytes"] > out["peak_bytes"] > 0
    assert out["shape"]["cp"] == (8 if strategy == "cp" else 2 if "cp" in strategy else 1)
