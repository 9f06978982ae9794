"""The pieces of `ci/gpu-check`: its cases, the budget that schedules them, the machine facts and install, the
CUDA-context probe and the per-case results.  Standard library only at import time: the script plans and
dry-runs before anything is installed."""
