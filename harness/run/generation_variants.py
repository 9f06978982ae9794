"""The rows of the generation presets `kv-cache` and `offload` (harness/run/presets.py holds the presets).

kv-cache: batch x context on `tiny` in fp32, a static cache, 8 new tokens after each prompt.  tiny's weights are
20 MiB and its cache holds 4 KiB per position and sequence (2 x 4 layers x 4 kv heads x 32 dims x 4 B), so the
cache overtakes the weights past about 5,100 positions over the batch: 3 of the grid's 9 cells lie past that
line (batch 8 x 1024, batch 16 x 512 and 16 x 1024), and the largest prefill, 16 x 1016 prompt tokens, takes
seconds on a 2-core CPU.

offload: one model, the weights kept where they are (`none`), in host memory (`cpu`: unsupported on a CPU-only
run, with the reason, and shown as such) and in a folder on disk (`disk`); the table sets each beside `none`.
"""

from __future__ import annotations

from typing import Any

KV_CACHE_NEW_TOKENS = 8
KV_CACHE_BATCHES = (1, 8, 16)
KV_CACHE_CONTEXTS = (128, 512, 1024)  # prompt + new tokens per sequence

KV_CACHE_GRID: tuple[dict[str, Any], ...] = tuple(
    {"workload": "generate", "batch_size": b, "prompt_len": c - KV_CACHE_NEW_TOKENS,
     "new_tokens": KV_CACHE_NEW_TOKENS, "kv_cache": "static"}
    for b in KV_CACHE_BATCHES for c in KV_CACHE_CONTEXTS)

OFFLOAD_MODES: tuple[dict[str, Any], ...] = tuple(
    {"workload": "generate", "prompt_len": 64, "new_tokens": 16, "offload": mode} for mode in ("none", "cpu", "disk"))
