"""`report --out` and `compare` under faults that come after the checks before anything is written: a disk
that fills while the report is written, and a tolerance that is not a fraction."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from harness.run import store
from tests.filesystems import can_mount, fill, tmpfs
from tests.store_damage import record


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from harness.cli.main import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("how", ["tmpfs" if can_mount() else "injected-ENOSPC"])
def test_a_disk_that_fills_while_the_report_is_written_ends_in_one_line(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The write probe passes, then the plots fill the disk: one line naming --out and the reason, exit 1,
    and the store read from is untouched."""
    import harness.report.html_report as html_report

    records = tmp_path / "records"
    store.append([record(0), record(1)], records)
    with contextlib.ExitStack() as stack:
        out = tmp_path / "out"
        if how == "tmpfs":  # another process fills the disk between the probe and the plots
            stack.enter_context(tmpfs(out))
            probe = store.check_writable

            def probe_then_fill(*args: Any, **kwargs: Any) -> None:
                probe(*args, **kwargs)
                fill(out)

            monkeypatch.setattr(store, "check_writable", probe_then_fill)
        else:
            def full(*args: object, **kwargs: object) -> None:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "tradeoff.png"))

            monkeypatch.setattr(html_report, "plot_tradeoff", full)
        code, _, err = _main(["report", "--store", str(records), "--out", str(out)], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"spacetime: error: report --out {out}: "), err
    assert os.strerror(errno.ENOSPC) in err
    assert [r["seed"] for r in store.rows(records)] == [0, 1]


def test_compare_refuses_a_time_tolerance_that_is_not_a_fraction(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("nan", "-0.1", "inf"):
        code, _, err = _main(["compare", "--store", str(tmp_path), "--time-tolerance", bad], capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith("spacetime: error: --time-tolerance: "), err
