"""Records of runs: one from the ranks' result, one for a run that produced none (with its status), and the
environment every record carries."""

from __future__ import annotations

import platform
import socket
from datetime import datetime, timezone
from typing import Any

from harness.core.host import cpu_model, git_commit, gpu_driver
from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.models.zoo import config_for
from harness.run.generation_records import generation_record
from harness.run.pipeline_records import pipeline_figures
from harness.train.measure import device_name, peak_flops, percentile
from strategies import get_strategy


def _max(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def from_result(spec: RunSpec, result: dict[str, Any], wall_s: float) -> Record:
    if spec.workload == "generate":
        return generation_record(spec, result, wall_s, environment(result))
    ranks = sorted(result["ranks"], key=lambda r: r["rank"])
    layout = result["layout"]
    per_step = [max(steps) for steps in zip(*(r["step_s"] for r in ranks), strict=True)]
    p50 = percentile(per_step, 50)
    global_batch = spec.batch_size * spec.grad_accum * layout["dp_replicate"] * layout["dp_shard"]
    tokens_per_s = global_batch * spec.seq_len / p50
    # the datasheet's dense peak for the step's matmuls: 16-bit tensor cores unless the run is fp32
    peak = peak_flops(result["device_name"], "fp32" if spec.dtype == "fp32" else "bf16") \
        if spec.device == "cuda" else None
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
        env=environment(result), **pipeline_figures(ranks, layout),
    )


def failed_record(spec: RunSpec, status: str, error: str, wall_s: float | None = None) -> Record:
    """A run that produced no result.  Its device name is this host's, so the regression gate matches it
    with the same case's earlier records."""
    local = _local_device_name(spec.device)
    return Record(spec=spec, status=status, error=error, world_size=spec.nproc, wall_s=wall_s,
                  global_batch=_planned_global_batch(spec), env=environment({"device_name": local} if local else {}))


def _planned_global_batch(spec: RunSpec) -> int | None:
    """The global batch the run was planned with (the strategy's data-parallel degree), if it has one."""
    try:
        return spec.batch_size * spec.grad_accum * get_strategy(spec.strategy).layout(spec).dp
    except Exception:  # an unknown strategy or a layout the spec cannot have: leave it blank
        return None


def _local_device_name(device: str) -> str | None:
    import torch

    if device == "cpu":
        return cpu_model()
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
        "cpu": cpu_model(),
        "gpu_driver": gpu_driver(),
        "host": socket.gethostname(),
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "utc_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
