"""--compile in `simulate`: not modelled.  Inductor's compiled code runs on real storage: under FakeTensorMode
its forward allocates real outputs outside the fake mode, and its backward reads the fake tensors' absent data
(a segmentation fault, torch 2.13, CPU).  The memory tracker's dispatch mode also breaks dynamo's fullgraph
trace.  Backends that run under fake tensors (aot_eager and the like) run eager kernels, whose buffers are not
Inductor's, so their figure would be a guess."""

from __future__ import annotations

from harness.core.errors import NotModelled
from harness.core.spec import RunSpec

WHY = ("Inductor's compiled kernels need real storage (under fake tensors its forward allocates real outputs and "
       "its backward reads absent data), and an eager backend's buffers are not Inductor's")


def check_compile(spec: RunSpec) -> None:
    """NotModelled for a compiled spec (`compile=VALUE: why`), before anything is built."""
    if spec.compile != "off":
        raise NotModelled(f"compile={spec.compile}: {WHY}")
