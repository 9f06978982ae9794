"""Record: one row per (spec, run): spec fields, status, memory and time figures, environment."""

from __future__ import annotations

import platform
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.measure import peak_flops, percentile
from harness.spec import RunSpec
from harness.zoo import config_for

SCHEMA_VERSION = 4  # 2: memory knob columns, trainable_params, optimizer_class; 3: nnodes;
#                    4: predicted_peak_bytes, simulated_peak_bytes, simulate_error
STATUSES = ("ok", "oom", "timeout", "error", "unsupported")
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
    env: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        spec, env = row.pop("spec"), row.pop("env")
        return {"schema_version": SCHEMA_VERSION, **spec, **row, **env}


def _max(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def from_result(spec: RunSpec, result: dict[str, Any], wall_s: float) -> Record:
    ranks = sorted(result["ranks"], key=lambda r: r["rank"])
    layout = result["layout"]
    per_step = [max(steps) for steps in zip(*(r["step_s"] for r in ranks), strict=True)]
    p50 = percentile(per_step, 50)
    global_batch = spec.batch_size * spec.grad_accum * layout["dp_replicate"] * layout["dp_shard"]
    tokens_per_s = global_batch * spec.seq_len / p50
    peak = peak_flops(result["device_name"]) if spec.device == "cuda" else None
    mfu = None
    if peak:
        flops = config_for(spec).flops_per_token(spec.seq_len, frozen_base=spec.lora_rank > 0)
        mfu = tokens_per_s * flops / (peak * spec.nproc)
    return Record(
        spec=spec, status="ok", world_size=spec.nproc, mesh_dp_replicate=layout["dp_replicate"],
        mesh_dp_shard=layout["dp_shard"], mesh_tp=layout["tp"], global_batch=global_batch,
        peak_bytes=_max([r["alloc_peak_bytes"] for r in ranks]),
        peak_bytes_per_rank=[r["alloc_peak_bytes"] for r in ranks],
        rss_peak_bytes=_max([r["rss_peak_bytes"] for r in ranks]),
        rss_peak_bytes_per_rank=[r["rss_peak_bytes"] for r in ranks],
        reserved_peak_bytes=_max([r["reserved_peak_bytes"] for r in ranks]),
        device_used_bytes=_max([r["device_used_bytes"] for r in ranks]),
        param_bytes_per_rank=[r["param_bytes"] for r in ranks],
        trainable_params=ranks[0].get("trainable_params"), optimizer_class=ranks[0].get("optimizer_class"),
        param_digest_per_rank=[r["param_digest"] for r in ranks],
        step_s_p50=p50, step_s_p10=percentile(per_step, 10), step_s_p90=percentile(per_step, 90),
        step_s=per_step, tokens_per_s=tokens_per_s, mfu=mfu, loss=ranks[0]["loss"], wall_s=wall_s,
        env=environment(result),
    )


def failed(spec: RunSpec, status: str, error: str, wall_s: float | None = None) -> Record:
    """A run that produced no result.  Its device name is this host's, so the regression gate matches it
    with the same case's earlier records."""
    local = _local_device_name(spec.device)
    return Record(spec=spec, status=status, error=error, world_size=spec.nproc, wall_s=wall_s,
                  global_batch=_planned_global_batch(spec), env=environment({"device_name": local} if local else {}))


def _planned_global_batch(spec: RunSpec) -> int | None:
    """The global batch the run was planned with (the strategy's data-parallel degree), if it has one."""
    from strategies import get_strategy

    try:
        return spec.batch_size * spec.grad_accum * get_strategy(spec.strategy).layout(spec).dp
    except Exception:  # an unknown strategy or a layout the spec cannot have: leave it blank
        return None


def _local_device_name(device: str) -> str | None:
    import torch

    from harness.measure import device_name

    if device == "cpu":
        return _cpu_model()
    if device == "cuda" and torch.cuda.is_available():
        return device_name(torch.device("cuda", 0))
    return None  # not resolved yet (the spec failed validation)


def environment(result: dict[str, Any]) -> dict[str, Any]:
    """Where and when: versions and device from the worker (if it got that far), the rest from here."""
    import torch

    return {
        "torch_version": result.get("torch_version", torch.__version__),
        "cuda_version": result.get("cuda_version", torch.version.cuda),
        "device_name": result.get("device_name"),
        "backend": result.get("backend"),
        "cpu": _cpu_model(),
        "gpu_driver": _gpu_driver(),
        "host": socket.gethostname(),
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "utc_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@lru_cache(maxsize=1)
def _cpu_model() -> str:
    import torch

    from harness.measure import device_name

    return device_name(torch.device("cpu"))


@lru_cache(maxsize=1)
def _gpu_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return out.strip().splitlines()[0] or None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The project's commit (with `-dirty` when the tree has changes), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "") if sha else None
