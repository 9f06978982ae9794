"""Runs across several hosts: torchrun's c10d rendezvous, and the flags that say which host this is.

Every host runs the same `spacetime run`/`sweep` command with its own --node-rank; the hosts meet at
--rdzv-endpoint (host:port on node 0).  Node 0's first rank writes the result and node 0 keeps the record
(with `nnodes`); the other nodes report `follower` and store nothing.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from harness.spec import SpecError

NODE_RANK_ENV = "SPACETIME_NODE_RANK"  # c10d numbers hosts in its own order; the worker reads ours


@dataclass(frozen=True)
class Rendezvous:
    """Where the hosts of a multi-node run meet and which host this is."""

    endpoint: str  # host:port on node 0, reachable from every node
    node_rank: int = 0
    run_id: str = "spacetime"  # hosts with the same id join the same rendezvous

    def with_run(self, index: int) -> Rendezvous:
        """The rendezvous of the index-th run of a sweep (every host plans the same runs in the same order)."""
        return Rendezvous(self.endpoint, self.node_rank, f"{self.run_id}-{index}")


def add_node_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several hosts (torchrun c10d rendezvous)")
    g.add_argument("--nnodes", type=int, default=None, help="hosts in the run (default 1); --nproc counts the "
                   "ranks of all hosts")
    g.add_argument("--node-rank", type=int, default=0, help="this host, 0..nnodes-1; node 0 keeps the records")
    g.add_argument("--rdzv-endpoint", default=None, help="host:port on node 0 where the hosts meet")
    g.add_argument("--rdzv-id", default="spacetime", help="the same on every host of one job, e.g. $SLURM_JOB_ID")


def rendezvous_from(args: argparse.Namespace) -> Rendezvous | None:
    """The rendezvous the flags describe, checked before anything is launched; None on one host."""
    nnodes = args.nnodes or 1
    if nnodes == 1:
        if args.node_rank or args.rdzv_endpoint:
            raise SpecError("nnodes", "--node-rank/--rdzv-endpoint need --nnodes > 1", "an integer > 1")
        return None
    if not args.rdzv_endpoint:
        raise SpecError("rdzv_endpoint", f"a run on {nnodes} hosts needs where they meet", "HOST:PORT on node 0")
    host, _, port = args.rdzv_endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError("rdzv_endpoint", f"expected HOST:PORT, got {args.rdzv_endpoint!r}", "HOST:PORT on node 0")
    if not 0 <= args.node_rank < nnodes:
        raise SpecError("node_rank", f"{args.node_rank} is not a host of {nnodes}", f"0..{nnodes - 1}")
    return Rendezvous(args.rdzv_endpoint, args.node_rank, args.rdzv_id)
