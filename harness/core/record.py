"""Record: one row per (spec, run): spec fields, status, memory and time figures, environment."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.core.spec import RunSpec

SCHEMA_VERSION = 6  # 2: memory knob columns, trainable_params, optimizer_class; 3: nnodes;
#                    4: predicted_peak_bytes, simulated_peak_bytes, simulate_error; 5: the generate workload;
#                    6: pipelines (mesh_pp, bubble_fraction, bubble_fraction_per_rank, bubble_theory)
INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM while measuring: says nothing of the spec
STATUSES = ("ok", "oom", "timeout", "error", "unsupported", INTERRUPTED)
FOLLOWER = "follower"  # a non-zero node of a multi-node run finished its part; never stored


@dataclass
class Record:
    spec: RunSpec
    status: str
    error: str | None = None
    world_size: int = 1
    mesh_dp_replicate: int | None = None  # the layout the strategy resolved (spec's 0 = default)
    mesh_dp_shard: int | None = None
    mesh_tp: int | None = None
    mesh_pp: int | None = None  # pipeline ranks (each holds its stages' blocks; peak_bytes_per_rank by stage)
    global_batch: int | None = None
    peak_bytes: int | None = None  # max over ranks of the primary figure (CUDA max allocated / CPU allocator)
    peak_bytes_per_rank: list[int] | None = None
    rss_peak_bytes: int | None = None
    rss_peak_bytes_per_rank: list[int] | None = None
    reserved_peak_bytes: int | None = None
    device_used_bytes: int | None = None
    param_bytes_per_rank: list[int] | None = None
    trainable_params: int | None = None  # parameters the optimizer updates (LoRA: the adapters)
    optimizer_class: str | None = None  # module.Class of the optimizer that ran
    # float64 sum of squares of each rank's local parameters after the last step: ranks holding the
    # same shard (replicas) must agree, which is how tests prove replicas stay in sync
    param_digest_per_rank: list[float] | None = None
    step_s_p50: float | None = None
    step_s_p10: float | None = None
    step_s_p90: float | None = None
    step_s: list[float] | None = None  # per timed step, slowest rank
    tokens_per_s: float | None = None  # global
    mfu: float | None = None
    loss: float | None = None
    wall_s: float | None = None
    # beside the measured peak (run/sweep --predict --simulate): `estimate`'s and `simulate`'s figures for
    # the same spec and device, comparable with peak_bytes; simulate_error says why there is no simulation
    predicted_peak_bytes: int | None = None
    simulated_peak_bytes: int | None = None
    simulate_error: str | None = None
    # the generate workload (peak_bytes stays the largest figure, so every table and gate reads these rows too)
    load_bytes: int | None = None  # after loading: the weights (and quantizer state) only
    prefill_peak_bytes: int | None = None
    decode_peak_bytes: int | None = None
    kv_cache_bytes: int | None = None
    ttft_s: float | None = None  # time to first token: the prefill and the first token's sampling
    decode_s_per_token_p50: float | None = None
    decode_s_per_token_p10: float | None = None
    decode_s_per_token_p90: float | None = None
    tokens_per_s_per_seq: float | None = None  # tokens_per_s is the aggregate over every sequence and rank
    # pipelines: the share of the schedule's time a rank waits (1 - its compute / schedule time, over the timed
    # steps), the mean over ranks and each rank's; and the schedule's theoretical (p-1)/(m+p-1) beside it
    bubble_fraction: float | None = None
    bubble_fraction_per_rank: list[float] | None = None
    bubble_theory: float | None = None
    env: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        spec, env = row.pop("spec"), row.pop("env")
        return {"schema_version": SCHEMA_VERSION, **spec, **row, **env}
