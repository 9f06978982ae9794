"""Facts about this host, each read in one place: the CPU's model and flags (/proc/cpuinfo), the GPU driver
(nvidia-smi) and the project's git commit.  No torch: the CUDA device's own name comes from the worker."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block ends here
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    """The CPU's marketing name, e.g. `AMD EPYC 7B13`."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def fast_16bit_cpu() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX).  Without, torch's CPU build
    runs bf16/fp16 training steps about 30x slower than fp32 (125m, batch 1 x 128: 72 s against 2.4 s)."""
    flags = _cpuinfo().get("flags", "").split()
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


@lru_cache(maxsize=1)
def gpu_driver() -> str | None:
    """The NVIDIA driver's version, or None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return out.strip().splitlines()[0] or None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The project's commit (with `-dirty` when the tree has changes), or None outside a checkout."""
    try:
        sha = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "") if sha else None
