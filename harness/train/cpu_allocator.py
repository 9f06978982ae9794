"""Exact CPU tensor memory: a counting CPU allocator, built once from `csrc/counting_allocator.cpp`.

`install()` swaps c10's CPU allocator for one that counts live bytes (the same malloc underneath) from that
moment on: the tensors the calling thread (the training loop) allocates, wherever they are freed; `uninstall()`
puts the previous allocator back.  `current_bytes()`, `peak_bytes()` and `reset_peak()` work like CUDA's
memory_allocated statistics.

The build (about 10 s, g++ and ninja) is cached in this environment's extension folder (`extensions_root()`
in harness/train/ext_builds.py: under $TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions, keyed by Python,
torch and the environment), named after the source's hash and built from a copy kept there: checkouts at other
paths in one environment (worktrees, a second clone) share the build of the same source instead of rebuilding
it over each other's, and a changed source builds beside the old one.  The process that builds or checks it (the
launcher) names the library in $SPACETIME_COUNTING_ALLOCATOR, which its children (torchrun's ranks) inherit:
they load it directly instead of checking the build again (importing setuptools and running ninja, 0.1-0.3 s
per rank).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from harness.train.ext_builds import extensions_root, prepare_build

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
    name, source = cached_source()
    folder = prepare_build(name, f"the CPU allocation counter ({name})")
    from torch.utils.cpp_extension import load

    module = load(name=name, sources=[str(source)], extra_cflags=["-O2"], build_directory=str(folder),
                  verbose=False)
    if module.__file__:
        os.environ[LIBRARY_ENV] = module.__file__  # for the processes this one starts
    return module


def cached_source() -> tuple[str, Path]:
    """The extension's name and a copy of its source in the extension folder, both named by the source's hash."""
    text = SOURCE.read_bytes()
    digest = hashlib.sha256(text).hexdigest()[:12]
    folder = extensions_root() / "spacetime-sources"
    copy = folder / f"counting_allocator_{digest}.cpp"
    if not copy.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = copy.with_name(f"{copy.name}.{os.getpid()}.tmp")
        partial.write_bytes(text)
        partial.replace(copy)  # whole or absent, whoever else is copying it
    return f"{NAME}_{digest}", copy


def _load_library(path: Path) -> ModuleType:
    import torch  # noqa: F401  (the extension links against torch's libraries, loaded by this import)

    spec = importlib.util.spec_from_file_location(path.name.split(".")[0], path)  # the name it was built as
    if spec is None or spec.loader is None:
        raise ImportError(f"{LIBRARY_ENV}={path}: not a loadable extension")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
