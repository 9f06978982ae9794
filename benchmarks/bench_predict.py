"""The analytic memory model (`spacetime estimate`): how long it takes, and what it predicts, per zoo shape.

No ranks are launched: these run in microseconds to milliseconds on any machine.  The predicted peaks are
tracked so a change to the model (harness/estimate/predict.py, activations.py) shows up on the dashboard like any
other regression.
"""

from __future__ import annotations

from typing import Any

MODELS = ["125m", "1b", "7b", "8b", "13b", "70b"]
STRATEGIES = ["single", "ddp", "fsdp_full_shard", "fsdp_tp"]


def _spec(model: str, strategy: str = "fsdp_full_shard") -> Any:
    from harness.core.spec import RunSpec
    from harness.run.validate import validate

    ranks = 1 if strategy == "single" else 8
    return validate(RunSpec(model=model, strategy=strategy, nproc=ranks, batch_size=1, seq_len=2048, dtype="bf16",
                   device="cuda"), measure=False)


class Estimate:
    """Seconds for one prediction (the issue's bar: well under a second up to 70B)."""

    params = (MODELS,)
    param_names = ("model",)

    def setup(self, model: str) -> None:
        from strategies import get_strategy

        self.spec = _spec(model)
        profile = get_strategy(self.spec.strategy).memory_profile(self.spec)
        assert profile is not None
        self.profile = profile

    def time_predict(self, model: str) -> None:
        from harness.estimate.predict import predict

        predict(self.spec, self.profile)


class PredictedPeak:
    """Predicted per-rank allocator peak, bf16 mixed, batch 1 x 2048, 8 ranks (single: 1)."""

    params = (MODELS, STRATEGIES)
    param_names = ("model", "strategy")

    def track_predicted_peak_bytes(self, model: str, strategy: str) -> float:
        from harness.estimate.predict import predict
        from strategies import get_strategy

        spec = _spec(model, strategy)
        return float(predict(spec, get_strategy(strategy).memory_profile(spec)).peak_bytes)  # type: ignore[arg-type]

    track_predicted_peak_bytes.unit = "bytes"  # type: ignore[attr-defined]


class Simulate:
    """`spacetime simulate` for 7b on 8 fake ranks, bf16 mixed, 1 x 2048 (the issue's bar: 20 s and 1 GiB RSS
    on a 2-core laptop CPU): wall seconds, and the simulated peak tracked like the predicted one."""

    params = (["fsdp_full_shard", "fsdp_tp"],)
    param_names = ("strategy",)
    timeout = 300
    number, repeat, rounds = 1, 1, 1

    def time_simulate_7b(self, strategy: str) -> None:
        from harness.simulate.runner import simulate

        simulate(_spec("7b", strategy))

    def track_simulated_peak_bytes_7b(self, strategy: str) -> float:
        from harness.simulate.runner import simulate

        return float(simulate(_spec("7b", strategy)).peak_bytes)

    track_simulated_peak_bytes_7b.unit = "bytes"  # type: ignore[attr-defined]
