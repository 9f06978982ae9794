"""benchmarks/ab_wall.py: one command timed in two trees, alternately, each run in its own tree's code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AB_WALL = ROOT / "benchmarks" / "ab_wall.py"


def _tree(path: Path, name: str) -> Path:
    """A tree with a module `which_tree` that appends the tree's name to a shared log when imported."""
    path.mkdir()
    (path / "which_tree.py").write_text(
        "import os\nwith open(os.environ['AB_LOG'], 'a') as log:\n    log.write(" + repr(name) + ")\n")
    return path


def test_runs_alternate_and_each_tree_runs_its_own_code(tmp_path: Path) -> None:
    a, b, log = _tree(tmp_path / "a", "A"), _tree(tmp_path / "b", "B"), tmp_path / "log"
    proc = subprocess.run([sys.executable, str(AB_WALL), "--runs", "3", "--json", str(a), str(b), "--",
                           sys.executable, "-c", "import which_tree"], capture_output=True, text=True,
                          env={"AB_LOG": str(log), "PATH": ""}, timeout=120, check=True)
    result = json.loads(proc.stdout)
    assert log.read_text() == "AB" + "AB" * 3  # one untimed run of each, then A, B alternately
    for side, tree in (("A", a), ("B", b)):
        seconds = result[side]["seconds"]
        assert result[side]["tree"] == str(tree) and len(seconds) == 3
        assert result[side]["min"] == min(seconds) <= result[side]["median"] <= max(seconds) == result[side]["max"]
    assert result["ratio_b_over_a"] == result["B"]["median"] / result["A"]["median"]


def test_a_failing_command_names_the_tree(tmp_path: Path) -> None:
    a, b = _tree(tmp_path / "a", "A"), tmp_path / "empty"
    b.mkdir()
    proc = subprocess.run([sys.executable, str(AB_WALL), "--runs", "1", str(a), str(b), "--",
                           sys.executable, "-c", "import which_tree"], capture_output=True, text=True,
                          env={"AB_LOG": str(tmp_path / "log"), "PATH": ""}, timeout=120)
    assert proc.returncode == 1
    assert f"in {b} exited 1" in proc.stderr and "No module named 'which_tree'" in proc.stderr
