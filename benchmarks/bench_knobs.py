"""Memory and speed of the memory levers (the `levers` sweep preset), one parameter per lever row.

The rows come from harness.sweep's plan of the preset on this machine (so a CPU without fast 16-bit
matrix multiplies gets its fp32 rows, as the sweep would), on the asv preset's first model.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import check_row, measure_specs, preset, row_figure

Cache = dict[str, dict[str, Any]]
_PRESET = preset()


def _levers() -> dict[str, Any]:
    from harness.core.knobs import knob_label
    from harness.core.spec import RunSpec
    from harness.run.presets import plan

    model = _PRESET.models[0]
    base = RunSpec(timeout_s=_PRESET.timeout_s)
    seq = 256 if _PRESET.name == "cpu" else _PRESET.seq_len
    specs = plan("levers", base, models=(model,), seq_len=seq)
    return {knob_label(s.__dict__).replace("-", "baseline", 1) if i == 0 else knob_label(s.__dict__): s
            for i, s in enumerate(specs)}


_SPECS = _levers()


class Levers:
    """fp32 -> bf16 mixed -> + activation checkpointing -> + LoRA -> + 8-bit AdamW -> + NF4 base, single rank."""

    params = (list(_SPECS),)
    param_names = ("levers",)
    timeout = _PRESET.timeout_s * len(_SPECS) + 60

    def setup_cache(self) -> Cache:
        return measure_specs(_SPECS)

    def setup(self, cache: Cache, levers: str) -> None:
        check_row(cache[levers], "peak_bytes")

    def track_peak_bytes(self, cache: Cache, levers: str) -> float:
        """Peak allocated memory over the memory steps."""
        return row_figure(cache[levers], "peak_bytes", levers)

    track_peak_bytes.unit = "bytes"  # type: ignore[attr-defined]

    def track_step_seconds(self, cache: Cache, levers: str) -> float:
        """Median wall seconds per timed step."""
        return row_figure(cache[levers], "step_s_p50", levers)

    track_step_seconds.unit = "seconds"  # type: ignore[attr-defined]
