"""Runs across several hosts: where torchrun's c10d rendezvous meets and which host this is.

Every host runs the same `spacetime run`/`sweep` command with its own --node-rank (cli/flags.py); the hosts
meet at --rdzv-endpoint (host:port on node 0).  Node 0's first rank writes the result and node 0 keeps the
record (with `nnodes`); the other nodes report `follower` and store nothing."""

from __future__ import annotations

from dataclasses import dataclass

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
