"""Exact CPU tensor memory: a counting CPU allocator, built once from `csrc/counting_allocator.cpp`.

`install()` swaps c10's CPU allocator for one that counts live bytes (the same malloc underneath) from that
moment on: the tensors the calling thread (the training loop) allocates, wherever they are freed; `uninstall()`
puts the previous allocator back.  `current_bytes()`, `peak_bytes()` and `reset_peak()` work like CUDA's
memory_allocated statistics.
The build (about 10 s, g++ and ninja) is cached in torch's extension folder
($TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions).  The process that builds or checks it (the launcher)
names the library in $SPACETIME_COUNTING_ALLOCATOR, which its children (torchrun's ranks) inherit: they load it
directly instead of checking the build again (importing setuptools and running ninja, 0.1-0.3 s per rank).
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from types import ModuleType

SOURCE = Path(__file__).parent / "csrc" / "counting_allocator.cpp"
NAME = "spacetime_counting_allocator"
LIBRARY_ENV = "SPACETIME_COUNTING_ALLOCATOR"


@lru_cache(maxsize=1)
def counting_allocator() -> ModuleType:
    """The compiled extension: the library a parent process checked, else built on first use, then loaded from
    the cache."""
    library = os.environ.get(LIBRARY_ENV)
    if library and Path(library).is_file():
        return _load_library(Path(library))
    from torch.utils.cpp_extension import load

    module = load(name=NAME, sources=[str(SOURCE)], extra_cflags=["-O2"], verbose=False)
    if module.__file__:
        os.environ[LIBRARY_ENV] = module.__file__  # for the processes this one starts
    return module


def _load_library(path: Path) -> ModuleType:
    import torch  # noqa: F401  (the extension links against torch's libraries, loaded by this import)

    spec = importlib.util.spec_from_file_location(NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{LIBRARY_ENV}={path}: not a loadable extension")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
