"""Two hosts on loopback through torchrun's c10d rendezvous train like one, and node 0 keeps the record."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.spec import RunSpec
from harness.run import store
from harness.run.sweep import run_sweep
from harness.run.validate import validate

ARGS = ("run", "--model", "tiny", "--strategy", "ddp", "--nproc", "2", "--nnodes", "2", "--batch-size", "2",
        "--seq-len", "16", "--warmup", "1", "--memory-steps", "1", "--steps", "2", "--timeout", "240")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node(rank: int, endpoint: str, store_dir: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, SPACETIME_STORE=str(store_dir))
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *ARGS, "--node-rank", str(rank),
                             "--rdzv-endpoint", endpoint, "--rdzv-id", "loopback", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_nodes_on_loopback_train_like_one_host_and_node_0_keeps_the_record(tmp_path: Path) -> None:
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [_node(rank, endpoint, tmp_path / f"store{rank}") for rank in (1, 0)]
    (out1, err1), (out0, err0) = (node.communicate(timeout=300) for node in nodes)
    assert nodes[1].returncode == 0, err0[-3000:]
    assert nodes[0].returncode == 0, err1[-3000:]
    record = json.loads(out0.strip().splitlines()[-1])
    assert (record["status"], record["nnodes"], record["world_size"]) == ("ok", 2, 2)
    assert len(record["peak_bytes_per_rank"]) == 2
    follower = json.loads(out1.strip().splitlines()[-1])
    assert follower["status"] == "follower" and "node 0 keeps the record" in follower["error"]
    assert [r["nnodes"] for r in store.rows(tmp_path / "store0")] == [2]
    assert not (tmp_path / "store1").exists()  # the follower stores nothing

    single = validate(RunSpec(model="tiny", batch_size=4, seq_len=16, warmup=1, memory_steps=1, steps=2))
    reference = run_sweep([single], None, show_progress=False)[0]
    assert record["loss"] == pytest.approx(reference.loss, rel=1e-4)  # the same global batch of 4
