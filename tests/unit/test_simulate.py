"""`spacetime simulate`: the real step under fake tensors, its JSON contract, what it refuses, and the CUDA
differences it applies.  (Its figures against measured ones: test_accuracy.py and test_cli.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.core.memory import CATEGORIES, CUDA_CONTEXT_BYTES
from harness.core.spec import RunSpec
from harness.simulate.runner import simulate

TINY = RunSpec(model="tiny", batch_size=2, seq_len=32, device="cpu")


def run_json(cli: Any, capsys: pytest.CaptureFixture[str], args: list[str]) -> dict[str, Any]:
    from harness.cli.main import main

    assert main(["simulate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_json_has_estimates_keys_and_fits(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(cli, capsys, ["--model", "tiny", "--strategy", "fsdp_full_shard", "--nproc", "4",
                                 "--batch-size", "2", "--seq-len", "32", "--gpu-memory", "1GiB"])
    assert set(out["breakdown"]) == set(CATEGORIES)
    assert out["peak_bytes"] == sum(v for k, v in out["breakdown"].items() if k != "context") > 0
    assert out["breakdown"]["context"] == CUDA_CONTEXT_BYTES  # the default target is CUDA, as for estimate
    assert out["fits"]["fits"] is True and out["fits"]["capacity_bytes"] == 2**30
    assert out["fits"]["free_bytes"] == 2**30 - out["device_bytes"]


@pytest.mark.parametrize("args, reason", [
    (["--strategy", "zero3", "--nproc", "2"], "cannot simulate zero3: DeepSpeed"),
    (["--strategy", "fsdp1_offload", "--nproc", "2"], "cannot simulate fsdp1_offload: FSDP1's CPUOffload"),
    (["--strategy", "accelerate_ddp", "--nproc", "2"], "cannot simulate accelerate_ddp"),
    (["--dtype", "fp16"], "cannot simulate --dtype fp16: the gradient scaler"),
    (["--optimizer", "adamw8bit"], "cannot simulate --optimizer adamw8bit"),
])
def test_says_plainly_what_it_cannot_simulate(cli: Any, args: list[str], reason: str) -> None:
    code, err = cli(["simulate", "--model", "tiny", *args])
    assert code == 1 and err.startswith(f"spacetime: unsupported: {reason}"), err
    assert "Traceback" not in err


def test_sharding_divides_model_state_across_the_simulated_world() -> None:
    """FSDP2 over 2 and 4 fake ranks: AdamW state per rank halves, and the peak shrinks."""
    by_world = {n: simulate(TINY.with_(strategy="fsdp_full_shard", nproc=n)) for n in (2, 4)}
    optim = {n: sim.breakdown["optimizer"] for n, sim in by_world.items()}
    assert optim[2] == pytest.approx(2 * optim[4], rel=0.02)
    assert by_world[2].peak_bytes > by_world[4].peak_bytes


def test_cuda_target_adds_rounding_foreach_temporaries_and_the_context() -> None:
    cpu, cuda = simulate(TINY), simulate(TINY, device="cuda")
    assert cpu.breakdown["context"] == 0 and cuda.breakdown["context"] == CUDA_CONTEXT_BYTES
    # foreach AdamW holds full-size temporaries (the sqrt of every second moment) where the CPU's per-tensor
    # loop holds one parameter's at a time: more than rounding alone could add (512 B per allocation)
    assert cuda.peak_bytes - cpu.peak_bytes > 4 * 2**20
    assert cuda.peak_bytes % 512 == 0  # every allocation rounded to CUDA's 512-byte blocks


def test_leaves_no_process_group_or_patch_behind() -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.fsdp as fsdp
    import torch.distributed.tensor._ops.utils as op_utils
    import torch.distributed.tensor._sharding_prop as prop
    import torch.distributed.tensor.parallel as tp
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.autograd.profiler import record_function
    from torch.distributed.device_mesh import DeviceMesh

    def patched() -> tuple[Any, ...]:
        return (DeviceMesh.__init__, dist.reduce_scatter_single, dist.all_gather_single, prop.detect_fake_mode,
                prop._propagate_use_strided_shard_flag, prop.ShardingPropagator._propagate_tensor_meta_non_cached,
                op_utils.expand_to_full_mesh_op_strategy, prop._expand_single_dim_strategy_to_mesh,
                record_function.__enter__, record_function.__exit__, fsdp.fully_shard, tp.parallelize_module,
                torch.UntypedStorage.data_ptr)

    before = patched()
    simulate(TINY.with_(strategy="fsdp_tp", nproc=2))
    assert not dist.is_initialized() and "data_ptr" not in FakeTensor.__dict__
    assert all(now is then for now, then in zip(patched(), before, strict=True))


@pytest.mark.parametrize("strategy", ["fsdp_full_shard", "fsdp_tp"])
def test_sharding_propagation_speedups_change_no_figure(strategy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The foreach shortcuts in DTensor's propagation (dtensor.dtensor_propagation) against torch's own
    code, on the CUDA target, where AdamW runs foreach over DTensors; fsdp_tp's 2-D mesh gives its parameters
    _StridedShard placements, the case whose flag the shortcut reconciles."""
    import functools

    import harness.simulate.dtensor as patches

    spec = TINY.with_(strategy=strategy, nproc=4, tp=2) if strategy == "fsdp_tp" else TINY.with_(strategy=strategy)
    fast = simulate(spec, device="cuda")
    monkeypatch.setattr(patches, "dtensor_propagation",
                        functools.partial(patches.dtensor_propagation, speedups=False))
    plain = simulate(spec, device="cuda")
    assert (fast.peak_bytes, fast.breakdown) == (plain.peak_bytes, plain.breakdown)


def test_fake_storages_get_addresses_as_real_ones_have() -> None:
    """stand_ins.storage_addresses: FSDP1 tells a freed storage (resized to nothing) and a view apart by
    data pointer, and a fake tensor's would be 0 whatever it holds."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from harness.simulate.stand_ins import storage_addresses

    with FakeTensorMode(), storage_addresses():
        whole, other = torch.empty(8), torch.empty(8)
        view = whole[2:]
        assert whole.data_ptr() > 0 and other.data_ptr() not in (0, whole.data_ptr())
        assert view.data_ptr() == whole.data_ptr() + 2 * 4
        assert view.untyped_storage().data_ptr() == whole.untyped_storage().data_ptr()
        whole.untyped_storage().resize_(0)  # how FSDP1 frees a gathered flat parameter
        assert whole.untyped_storage().data_ptr() == whole.data_ptr() == view.data_ptr() == 0
    assert torch.empty(1).data_ptr() > 0  # real tensors keep their own


@pytest.mark.parametrize("spec", [
    TINY.with_(strategy="single", dtype="bf16", activation_checkpointing="full"),
    TINY.with_(strategy="ddp", nproc=2, lora_rank=8),
    TINY.with_(strategy="fsdp_hybrid_shard", nproc=4, dtype="bf16-pure", optimizer="sgd"),
    TINY.with_(strategy="fsdp_tp", nproc=4, tp=2, dtype="bf16", activation_checkpointing="selective"),
], ids=["single", "ddp", "fsdp_hybrid_shard", "fsdp_tp"])
def test_quick_cache_keys_change_no_figure_and_no_cache_decision(spec: RunSpec,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """fake_mode's cheaper dispatch-cache key against torch's own, on both targets: the same figures, and the
    same cache hits, misses and bypasses (the key splits ops into the same classes)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    import harness.simulate.fake_mode

    def run() -> tuple[Any, ...]:
        FakeTensorMode.cache_clear()
        sims = [simulate(spec, device) for device in ("cpu", "cuda")]
        info = FakeTensorMode.cache_info()
        return (*[(s.peak_bytes, s.breakdown) for s in sims], info.hits, info.misses, dict(info.bypasses))

    run()  # a process's first simulation dispatches one-time ops (DTensor's sharding cache fills, ...)
    quick = run()
    monkeypatch.setattr(harness.simulate.fake_mode, "SimFakeMode", FakeTensorMode)
    assert run() == quick


@pytest.mark.parametrize("flags", [[None], [False], [True], [False, True], [True, False, False], [None, True],
                                   [False, None], [True, None, True], []])
def test_strided_verdict_reconciles_as_torchs_loop_over_all_arguments(flags: list[bool | None]) -> None:
    """dtensor.py's once-per-op verdict against torch's own reconciliation (which reads every argument),
    on an op whose arguments carry these _StridedShard flags beside a plain Shard(0) argument."""
    from types import SimpleNamespace

    import torch.distributed.tensor._sharding_prop as prop
    from torch.distributed.tensor.placement_types import Shard, _StridedShard

    from harness.simulate.dtensor import _strided_verdict

    strided = (_StridedShard(0, split_factor=2),)
    schema = SimpleNamespace(args_spec=[SimpleNamespace(placements=(Shard(0),), use_strided_shard_as_shard_order=None)]
                             + [SimpleNamespace(placements=strided, use_strided_shard_as_shard_order=flag)
                                for flag in flags])

    def reconciled(op_schema: Any) -> tuple[Any, Any]:
        out = SimpleNamespace(placements=strided, use_strided_shard_as_shard_order="unset", shard_order="unset")
        strategy = SimpleNamespace(strategies=[SimpleNamespace(output_specs=(out,), input_specs=None)])
        if op_schema is not None:
            prop._propagate_use_strided_shard_flag(strategy, op_schema)  # type: ignore[arg-type]
        return out.use_strided_shard_as_shard_order, out.shard_order

    assert reconciled(_strided_verdict(schema)) == reconciled(schema)


def test_tracker_imports_memtracker_alone_and_the_package_still_answers() -> None:
    """tracker.py defers `torch.distributed._tools`' __init__ (every tool, inductor included); its names still
    come from the package on first use, as the same objects."""
    import subprocess
    import sys

    code = ("import sys, harness.simulate.tracker as t\n"
            "print(any(m.startswith('torch._inductor') for m in sys.modules))\n"
            "import torch.distributed._tools as tools\n"
            "from torch.distributed._tools import FSDPMemTracker\n"
            "print(tools.MemTracker is t.MemTracker, FSDPMemTracker.__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "True", "FSDPMemTracker"]


def test_leaves_the_garbage_collector_as_it_found_it() -> None:
    """runner.imports_set_aside: the collector is off while the imports run and what they made is frozen out
    of its reach; `simulate` gives it all back once done; the freeze at exit is registered once, however many
    simulations run."""
    import atexit
    import gc

    from harness.simulate.runner import imports_set_aside

    assert gc.get_freeze_count() == 0 and gc.isenabled()
    with imports_set_aside():
        assert not gc.isenabled()
    assert gc.get_freeze_count() > 0 and gc.isenabled()
    gc.unfreeze()
    simulate(TINY)  # imports what registers exit callbacks of its own
    callbacks = atexit._ncallbacks()
    simulate(TINY)
    simulate(TINY)
    assert gc.get_freeze_count() == 0 and gc.isenabled() and atexit._ncallbacks() == callbacks
