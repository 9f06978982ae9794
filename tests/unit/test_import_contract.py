"""The import contract (ci/check-imports, run by `nox -s lint` too): no import cycles among the project's
modules, in-function imports included, and layers that import one way (cli > report > run > estimate |
simulate > strategies > train > models > core); on the project, and on copies of it with a planted breach."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "ci" / "check-imports"


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True, text=True, timeout=60)


def _copy(tmp_path: Path) -> Path:
    for package in ("harness", "strategies", "benchmarks"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _plant(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code)


def test_the_project_keeps_the_contract() -> None:
    result = _check(ROOT)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1].startswith("0 import cycles and 0 imports against the layers among ")


def test_a_planted_cycle_inside_a_function_fails(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _plant(root / "harness" / "models" / "zoo.py", "def _planted():\n    from harness.models import llama\n")
    result = _check(root)
    assert result.returncode == 1
    assert "cycle of 2: harness.models.llama, harness.models.zoo" in result.stdout.splitlines()


def test_an_import_against_the_layers_fails_and_names_the_line(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    units = root / "harness" / "core" / "units.py"
    lines = len(units.read_text().splitlines())
    _plant(units, "def _planted():\n    from harness.cli.main import main\n")
    _plant(root / "strategies" / "single.py", "from harness.run.launch import launch\n")
    _plant(root / "harness" / "estimate" / "fit.py", "from harness.simulate.runner import simulate\n")
    out = _check(root).stdout
    assert (f"against the layers: harness/core/units.py:{lines + 4}: harness.core.units (core) imports "
            "harness.cli.main (cli)") in out
    assert "strategies.single (strategies) imports harness.run.launch (run)" in out
    assert "harness.estimate.fit (estimate) imports harness.simulate.runner (simulate)" in out  # peers


def test_a_registry_loading_its_own_children_is_the_one_allowed_loop(tmp_path: Path) -> None:
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "__init__.py").write_text("from strategies.base import Strategy\n"
                                                         "def get(name):\n    from strategies import single\n")
    (tmp_path / "strategies" / "base.py").write_text("class Strategy: ...\n")
    (tmp_path / "strategies" / "single.py").write_text("from strategies import Strategy\n")
    result = _check(tmp_path)
    assert result.returncode == 0, result.stdout
