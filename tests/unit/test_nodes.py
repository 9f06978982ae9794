"""Runs across hosts without a launch: torchrun's rendezvous flags and one rendezvous per run of a sweep."""

from __future__ import annotations

from pathlib import Path

from harness.core.spec import RunSpec
from harness.run.launch import torchrun_command
from harness.run.nodes import Rendezvous


def test_torchrun_gets_the_rendezvous_and_the_ranks_per_host() -> None:
    spec = RunSpec(strategy="ddp", nproc=8, nnodes=2)
    cmd = torchrun_command(spec, Path("out"), Path("logs"), Rendezvous("node0:29500", 1, "job7-3"))
    for flag in ("--nnodes=2", "--node-rank=1", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29500",
                 "--rdzv-id=job7-3", "--nproc-per-node=4"):
        assert flag in cmd
    assert "--standalone" not in cmd
    one_host = torchrun_command(spec.with_(nnodes=1), Path("out"), Path("logs"))
    assert "--standalone" in one_host and "--nproc-per-node=8" in one_host


def test_each_run_of_a_sweep_meets_in_its_own_rendezvous() -> None:
    rdzv = Rendezvous("node0:29500", 1, "job7")
    assert [rdzv.with_run(i).run_id for i in (0, 1)] == ["job7-0", "job7-1"]
    assert rdzv.with_run(3).node_rank == 1 and rdzv.with_run(3).endpoint == "node0:29500"
