"""The asv machine of this host, named after its accelerator so dashboards never mix GPU models.

`python -m harness.run.asv_machine` writes (or updates) the entry in ~/.asv-machine.json and prints its name, for
`asv run --machine NAME`:  `<host>-<count>x<gpu model>` (e.g. `node7-8xNVIDIA-H100-80GB-HBM3`) on a CUDA
machine, `<host>-cpu` elsewhere.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys

from harness.core.host import cpu_model


def gpu_names() -> list[str]:
    """The CUDA devices this process can see, by name (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def machine_name(host: str, gpus: list[str]) -> str:
    """`host-cpu`, or `host-NxMODEL` (mixed models are listed each with its count)."""
    if not gpus:
        return f"{_slug(host)}-cpu"
    counts: dict[str, int] = {}
    for name in gpus:
        counts[name] = counts.get(name, 0) + 1
    return "-".join([_slug(host)] + [f"{n}x{_slug(model)}" for model, n in counts.items()])


def asv_machine_args(name: str) -> list[str]:
    """The `asv machine` command line that records this host under `name` without asking anything."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return ["asv", "machine", "--yes", "--machine", name, "--os", f"{platform.system()} {platform.release()}",
            "--arch", platform.machine(), "--cpu", cpu_model(), "--num_cpu", str(os.cpu_count() or 1),
            "--ram", str(ram)]


def main() -> int:
    host = os.environ.get("SPACETIME_ASV_HOST") or socket.gethostname().split(".")[0]
    name = machine_name(host, gpu_names())
    subprocess.run(asv_machine_args(name), check=True, stdout=subprocess.DEVNULL)
    print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
