"""The workload's checks before anything is launched (called from harness/run/validate.py).

Bad input (SpecError, exit 2): an unknown workload, cache kind or offload mode; a prompt plus new tokens past the
longest sequence a spec may have; more rows (batch x beams) than a batch may have; a flag of one workload given
with the other.  Valid but not runnable here (Unsupported): a strategy that does not generate, `--offload cpu`
where the weights already live in host memory (and, measured, anywhere so far), `--offload disk` under a strategy
other than single.
"""

from __future__ import annotations

from harness.core.errors import SpecError, Unsupported
from harness.core.knobs import KV_CACHES, OFFLOADS, WORKLOADS
from harness.core.limits import LIMITS
from harness.core.spec import RunSpec
from strategies.base import Strategy

# RunSpec fields that mean something to one workload only, each with what it needs of the other
GENERATE_ONLY = ("prompt_len", "new_tokens", "num_beams", "kv_cache", "offload")
TRAIN_ONLY = {"lora_rank": "nothing trains", "optimizer": "no optimizer runs",
              "grad_accum": "there are no gradients", "activation_checkpointing": "there is no backward"}


def _choice(spec: RunSpec, field: str, valid: tuple[str, ...]) -> None:
    value = getattr(spec, field)
    if value not in valid:
        raise SpecError(field, f"unknown value {value!r}", ", ".join(valid))


def check_workload(spec: RunSpec) -> None:
    """SpecError for a workload field that can never run (the integer bounds are checked before this)."""
    for field, valid in (("workload", WORKLOADS), ("kv_cache", KV_CACHES), ("offload", OFFLOADS)):
        _choice(spec, field, valid)
    default = RunSpec()
    if spec.workload == "train":
        for field in GENERATE_ONLY:
            if getattr(spec, field) != getattr(default, field):
                raise SpecError(field, "applies to --workload generate only", f"{getattr(default, field)} "
                                "(the default) with --workload train")
        return
    for field, why in TRAIN_ONLY.items():
        if getattr(spec, field) != getattr(default, field):
            raise SpecError(field, f"trains only: with --workload generate {why}",
                            f"{getattr(default, field)} (the default) with --workload generate")
    longest = LIMITS["seq_len"][1]
    if spec.prompt_len + spec.new_tokens > longest:
        raise SpecError("new_tokens", f"prompt {spec.prompt_len} + {spec.new_tokens} new tokens is past the "
                        f"longest sequence, {longest} positions", f"1..{max(longest - spec.prompt_len, 1)}")
    rows = LIMITS["batch_size"][1]
    if spec.batch_size * spec.num_beams > rows:
        raise SpecError("num_beams", f"batch {spec.batch_size} x {spec.num_beams} beams is "
                        f"{spec.batch_size * spec.num_beams} rows, above the batch limit {rows}",
                        f"1..{max(rows // spec.batch_size, 1)}")


def check_generation(spec: RunSpec, strategy: Strategy, measure: bool) -> None:
    """Unsupported for a generate spec this strategy or machine cannot run (`spec.device` resolved)."""
    if spec.workload != "generate":
        return
    if not strategy.generates:
        raise Unsupported(f"{strategy.name} with --workload generate: {strategy.generate_why_not}")
    if measure and spec.offload == "cpu" and spec.device == "cpu":
        raise Unsupported("--offload cpu on a CPU-only run: the weights already live in host memory, the same "
                          "pool the run computes from, so there is nothing to offload; use --offload disk, or "
                          "a CUDA device")
    if measure and spec.offload == "cpu":
        raise Unsupported("--offload cpu: a measured run offloads to disk only so far (estimate models cpu); "
                          "use --offload disk or none")
    if spec.offload == "disk" and spec.strategy != "single":
        raise Unsupported(f"--offload disk runs under single only: accelerate's hooks bring whole modules back "
                          f"from disk, not {spec.strategy}'s shards or replicas")
