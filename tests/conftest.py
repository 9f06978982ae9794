"""Shared fixtures.  The out-of-tree test plugin (tests/plugins) is put on sys.path and PYTHONPATH before
any test loads the strategy registry, so its entry points are seen here and by every torchrun worker.
Every test under tests/integration launches torchrun and is marked `slow` here (`pytest -m "not slow"`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"
sys.path.insert(0, str(PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGINS), os.environ.get("PYTHONPATH")) if p)


INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str]]:
    """`spacetime ARGS` through harness.cli.main in this process: (exit status, stderr)."""
    from harness.cli.main import main

    def run(args: list[str]) -> tuple[int, str]:
        try:
            code = main(args)
        except SystemExit as exit_:  # argparse's own errors
            code = int(exit_.code or 0)
        return code, capsys.readouterr().err

    return run
