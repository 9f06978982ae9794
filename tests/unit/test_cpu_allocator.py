"""The counting CPU allocator's uninstall, and the library handed from the launcher to its ranks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

UNINSTALL_SCRIPT = textwrap.dedent("""
    import torch
    from harness.train.cpu_allocator import counting_allocator
    c = counting_allocator()
    c.install()
    base = c.current_bytes()
    kept = torch.empty(4000, dtype=torch.uint8)
    assert c.current_bytes() - base == 4000
    c.uninstall()
    later = torch.empty(3000, dtype=torch.uint8)  # the previous allocator: not counted
    assert c.current_bytes() - base == 4000, c.current_bytes()
    del kept  # allocated while installed: its free is still counted
    assert c.current_bytes() == base, c.current_bytes()
    del later
    c.uninstall()  # twice is harmless
    c.install()
    again = torch.empty(500, dtype=torch.uint8)
    assert c.current_bytes() - base == 500, c.current_bytes()
    print("ok")
""")

CHILD_SCRIPT = textwrap.dedent("""
    import sys, torch
    from harness.train.cpu_allocator import counting_allocator
    c = counting_allocator()
    assert "torch.utils.cpp_extension" not in sys.modules  # loaded as is, no build check
    c.install()
    base = c.current_bytes()
    x = torch.empty(1234, dtype=torch.uint8)
    assert c.current_bytes() - base == 1234
    print(c.__file__)
""")


def _python(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)


def test_uninstall_puts_the_previous_allocator_back() -> None:
    out = _python(UNINSTALL_SCRIPT, dict(os.environ))
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


def test_children_load_the_library_their_parent_checked() -> None:
    from harness.train.cpu_allocator import LIBRARY_ENV

    env = {k: v for k, v in os.environ.items() if k != LIBRARY_ENV}
    parent = _python("from harness.train.cpu_allocator import counting_allocator, LIBRARY_ENV\n"
                     "import os; m = counting_allocator(); assert os.environ[LIBRARY_ENV] == m.__file__\n"
                     "print(m.__file__)", env)
    assert parent.returncode == 0, parent.stderr
    library = parent.stdout.strip().splitlines()[-1]
    child = _python(CHILD_SCRIPT, {**env, LIBRARY_ENV: library})
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip().splitlines()[-1] == library


def test_a_missing_library_falls_back_to_the_build_check(tmp_path: Path) -> None:
    from harness.train.cpu_allocator import LIBRARY_ENV

    out = _python("from harness.train.cpu_allocator import counting_allocator\n"
                  "import sys; c = counting_allocator()\n"
                  "assert 'torch.utils.cpp_extension' in sys.modules\nprint('ok')",
                  {**os.environ, LIBRARY_ENV: f"{tmp_path}/gone.so"})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


def test_the_build_is_named_by_the_source_and_not_by_the_checkout(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.train.cpu_allocator as allocator

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    name, copy = allocator.cached_source()
    assert copy.read_bytes() == allocator.SOURCE.read_bytes() and copy.is_relative_to(tmp_path / "extensions")
    other_checkout = tmp_path / "clone" / "counting_allocator.cpp"  # the same source at another path
    other_checkout.parent.mkdir()
    other_checkout.write_bytes(allocator.SOURCE.read_bytes())
    monkeypatch.setattr(allocator, "SOURCE", other_checkout)
    assert allocator.cached_source() == (name, copy)  # one build for both
    other_checkout.write_bytes(allocator.SOURCE.read_bytes() + b"// changed\n")
    changed_name, changed_copy = allocator.cached_source()
    assert changed_name != name and changed_copy != copy and copy.is_file()  # built beside, not over
