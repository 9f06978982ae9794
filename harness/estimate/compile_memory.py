"""--compile in `estimate`: not modelled, for the reason below (docs: benchmarks/results/compile-cpu.md).

Inductor's backward keeps what its min-cut partitioner chooses for each graph: it recomputes cheap elementwise
ops (norm scalings, rotary embedding, activations) instead of saving their outputs, and fused kernels leave out
eager's intermediates.  Counted with saved-tensor hooks on `tiny` (fp32, 4 x 128 tokens) a compiled block keeps
about a fifth less than the eager block the activation model counts; which tensors it keeps changes with the
graph's ops and dtypes (autocast's casts, LoRA, checkpointing), and its backward's buffers are not eager's
either.  No rule was found that holds over those, so the figure is reported as not modelled, never guessed.
"""

from __future__ import annotations

from harness.core.errors import NotModelled
from harness.core.spec import RunSpec

WHY = ("Inductor's partitioner picks, per compiled graph, which tensors backward keeps (it recomputes cheap "
       "elementwise ops), and its fused kernels' buffers are not eager's; no rule is modelled for them")


def check_compile(spec: RunSpec) -> None:
    """NotModelled for a compiled spec (`compile=VALUE: why`)."""
    if spec.compile != "off":
        raise NotModelled(f"compile={spec.compile}: {WHY}")
