"""Exact CPU tensor memory: a counting CPU allocator, built once from `csrc/counting_allocator.cpp`.

`install()` swaps c10's CPU allocator for one that counts live bytes (the same malloc underneath) from that
moment on: the tensors the calling thread (the training loop) allocates, wherever they are freed.
`current_bytes()`, `peak_bytes()` and `reset_peak()` work like CUDA's memory_allocated statistics.
The build (about 10 s, g++ and ninja) is cached in torch's extension folder
($TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import ModuleType

SOURCE = Path(__file__).parent / "csrc" / "counting_allocator.cpp"


@lru_cache(maxsize=1)
def counting_allocator() -> ModuleType:
    """The compiled extension (built on first use, then loaded from the cache)."""
    from torch.utils.cpp_extension import load

    return load(name="spacetime_counting_allocator", sources=[str(SOURCE)], extra_cflags=["-O2"],
                verbose=False)
