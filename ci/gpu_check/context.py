#!/usr/bin/env python3
"""The CUDA context, as the driver sees it: GPU 0's used memory (nvidia-smi) before CUDA is initialized and
after each step that grows the context, less what torch's caching allocator holds at that point.

    python ci/gpu_check/context.py [--dry-run]     one JSON line on stdout

Steps: torch.cuda.init(); the first tensor (the primary context); a bf16 matmul (cuBLAS); bf16
scaled_dot_product_attention forward and backward (the attention kernels, loaded lazily).  The estimate's
figure (harness.core.memory.CUDA_CONTEXT_BYTES: context and kernels) is set beside the last step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.core.memory import CUDA_CONTEXT_BYTES  # noqa: E402  (after the checkout is on the path)

STEPS = ("init", "first_tensor", "matmul", "attention")


def used_bytes() -> int:
    """GPU 0's used memory as the driver reports it (MiB resolution)."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return int(float(out.strip().splitlines()[0])) * 2**20


def _step(name: str) -> None:
    import torch

    if name == "init":
        torch.cuda.init()
    elif name == "first_tensor":
        torch.empty(1, device="cuda")
    elif name == "matmul":
        a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
        (a @ a).sum().item()
    else:
        q = torch.randn(4, 32, 2048, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
    if name != "init":
        torch.cuda.synchronize()


def measure() -> dict[str, object]:
    import torch

    before = used_bytes()
    points: dict[str, dict[str, int]] = {}
    for name in STEPS:
        _step(name)
        used = used_bytes()
        reserved = int(torch.cuda.memory_reserved()) if name != "init" else 0
        points[name] = {"used_bytes": used, "allocator_reserved_bytes": reserved,
                        "context_bytes": used - before - reserved}
    measured = points["attention"]["context_bytes"]
    return {"used_before_bytes": before, "points": points, "context_bytes": measured,
            "estimate_context_bytes": CUDA_CONTEXT_BYTES,
            "estimate_error": CUDA_CONTEXT_BYTES / measured - 1 if measured > 0 else None,
            "device_name": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda}


def main(argv: list[str]) -> int:
    if "--dry-run" in argv:
        print(json.dumps({"planned": list(STEPS), "estimate_context_bytes": CUDA_CONTEXT_BYTES}))
        return 0
    print(json.dumps(measure()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
