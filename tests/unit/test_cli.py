"""The `spacetime` command as a user meets it: one-line errors with exit 2 before anything launches, listings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import spacetime

BAD_INPUT = [
    ["run", "--model", "nope"],
    ["run", "--strategy", "nope"],
    ["run", "--strategy", "single", "--nproc", "2"],
    ["run", "--batch-size", "0"],
    ["run", "--batch-size", "four"],
    ["run", "--strategy", "tp", "--nproc", "3"],
    ["run", "--strategy", "fsdp_hybrid_shard", "--nproc", "1"],
    ["run", "--device", "tpu"],
    ["run", "--timeout", "0"],
    ["run", "--no-such-flag"],
    ["sweep", "--preset", "nope"],
    ["sweep", "--strategies", "single,nope"],
    ["sweep", "--global-batch", "3"],
    ["run", "--strategy", "ddp", "--nproc", "2", "--nnodes", "2"],  # no --rdzv-endpoint
    ["run", "--strategy", "ddp", "--nproc", "2", "--nnodes", "2", "--rdzv-endpoint", "node0"],
    ["run", "--strategy", "ddp", "--nproc", "2", "--nnodes", "2", "--rdzv-endpoint", "h:1", "--node-rank", "2"],
    ["run", "--strategy", "ddp", "--nproc", "3", "--nnodes", "2", "--rdzv-endpoint", "h:1"],
    ["run", "--strategy", "ddp", "--nproc", "2", "--node-rank", "1"],
    ["simulate", "--model", "nope"],
    ["simulate", "--strategy", "tp", "--nproc", "3"],
    ["simulate", "--gpu", "H100-81GB"],
    ["simulate", "--gpu-memory", "lots"],
    ["bogus-command"],
]


@pytest.mark.parametrize("args", BAD_INPUT, ids=" ".join)
def test_bad_input_is_one_line_exit_2_nothing_launched(args: list[str], store_dir: Path, cli: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACETIME_STORE", str(store_dir))
    code, err = cli(args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spacetime: error: "), err
    assert "Traceback" not in err
    assert not store_dir.exists()  # nothing ran, nothing was recorded


def test_the_installed_entry_point_reports_bad_input_the_same_way(store_dir: Path) -> None:
    result = spacetime(*BAD_INPUT[0], store=store_dir)
    assert result.returncode == 2 and result.stderr.startswith("spacetime: error: --model: unknown model")
    assert len(result.stderr.strip().splitlines()) == 1 and not store_dir.exists()


def test_zoo_lists_exact_counts_whole_in_100_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    out = spacetime("zoo").stdout
    assert "6,738,415,616" in out and "8,030,261,248" in out and "7,000,559,616" in out
    assert "\u2026" not in out and max(len(line.rstrip()) for line in out.splitlines()) <= 100


def test_a_dry_run_of_an_unsupported_spec_says_why_and_stores_nothing(store_dir: Path, cli: Any) -> None:
    code, err = cli(["run", "--strategy", "fsdp1_offload", "--nproc", "2", "--device", "cpu", "--dry-run",
                     "--store", str(store_dir)])
    assert code == 1 and err.startswith("spacetime: unsupported: fsdp1_offload on cpu: FSDP1's CPUOffload")
    assert not store_dir.exists()
